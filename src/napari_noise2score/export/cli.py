"""The ``export`` command: a .n2s model to a bioimage.io model package."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``export MODEL.n2s -o NAME.zip`` to the command line's subcommands."""
    p = sub.add_parser("export", help="write a model as a bioimage.io model package (.zip)")
    p.add_argument("model", type=Path, metavar="MODEL", help="a .n2s model file")
    p.add_argument("-o", "--output", type=Path, required=True, help="package to write (.zip)")
    p.add_argument("--image", type=Path,
                   help="an image the model was trained on, for the package's test input and "
                   "output (default: a synthetic image with the model's noise)")
    p.add_argument("--axes", help="axes of --image (default: inferred)")
    p.add_argument("--name", help="model name (default: 'Noise2Score NOISE denoiser')")
    p.add_argument("--description", help="one-sentence description")
    p.add_argument("--authors", help="authors, separated by ';' (default: the user's name)")
    p.add_argument("--training-data", help="what the model was trained on, for the README")
    p.add_argument("--license", default="CC-BY-4.0", help="SPDX licence id (default CC-BY-4.0)")
    p.add_argument("--tta", action="store_true",
                   help="average over the 8 flips and turns in the package (8x slower)")


def run_export(args: argparse.Namespace) -> None:
    from ..api import load_model
    from ..io.lazy import open_lazy, training_planes
    from ..io.outputs import refuse_inputs
    from .bioimageio import TEST_SIZE, export_package, require_bioimageio

    require_bioimageio()  # before any work
    refuse_inputs(args.output, [args.model, *([args.image] if args.image else [])], "package")
    model = load_model(args.model, "cpu")
    image = None
    if args.image is not None:  # one plane's centre, read without loading the file whole
        data, axes = open_lazy(args.image, args.axes)
        image = training_planes(data, axes, max_bytes=4 * TEST_SIZE * TEST_SIZE)
    authors = [a.strip() for a in args.authors.split(";") if a.strip()] if args.authors \
        else None
    path, source = export_package(model, args.output, image, args.name, args.description,
                                  authors, args.training_data, args.license, args.tta)
    print(f"test image: {source}" + (f", from {args.image}" if args.image else ""))
    print(f"wrote {path} (validated with bioimageio.spec)")

"""Physical calibration of TIFF inputs (pixel size, spacing, units), carried to TIFF outputs.

A denoised image is the same sample at the same sampling: its output keeps the resolution
tags (pixels per unit), the ImageJ ``spacing``/``unit``/``finterval`` and the OME
``PhysicalSize*``/``TimeIncrement*`` attributes of its input, and stays OME when the input
was OME (or the output is named ``.ome.tif``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .files import TIFF_SUFFIXES
from .lazy import series_index

#: ImageJ metadata that describes the sampling (kept); the rest (ranges, LUTs...) is not.
IMAGEJ_KEYS = ("spacing", "unit", "finterval")
#: Orders of axes an ImageJ hyperstack can hold (a subsequence of TZCYX).
IMAGEJ_ORDER = "TZCYX"
#: ImageJ length units (as ImageJ writes them) to OME's.
_OME_UNITS = {"um": "µm", "micron": "µm", "microns": "µm", "\\u00B5m": "µm", "µm": "µm",
              "nm": "nm", "mm": "mm", "cm": "cm", "m": "m", "pm": "pm"}


@dataclass(frozen=True)
class Calibration:
    """What a TIFF says about its physical sampling (each part empty when it says nothing):
    ``resolution``, pixels per unit along X and Y (TIFF tags) in ``resolution_unit`` (1:
    none, 2: inch, 3: centimetre); ``imagej``, the ImageJ sampling metadata; ``ome``, the
    OME Pixels sampling attributes (``PhysicalSizeX``, ``PhysicalSizeXUnit``...)."""

    resolution: tuple[float, float] | None = None
    resolution_unit: int = 1
    imagej: dict[str, Any] = field(default_factory=dict)
    ome: dict[str, Any] = field(default_factory=dict)


def read_calibration(path: str | os.PathLike, series: int | None = None) -> Calibration:
    """The calibration of a TIFF's chosen series (an empty one for other files)."""
    import tifffile  # lazy, as in io.lazy: not at the command line's start

    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES or not path.is_file():
        return Calibration()
    with tifffile.TiffFile(path) as tif:
        index = series_index(tif, series, path)
        page = tif.series[index].keyframe
        tags = page.tags
        resolution = None
        if "XResolution" in tags and "YResolution" in tags:
            resolution = tuple(float(v) for v in page.resolution)
        imagej = {k: v for k, v in (tif.imagej_metadata or {}).items() if k in IMAGEJ_KEYS}
        ome = _ome_sampling(tif, index) if tif.is_ome else {}
        return Calibration(resolution, int(page.resolutionunit), imagej, ome)


def _ome_sampling(tif, index: int) -> dict[str, Any]:
    """The sampling attributes of the OME Pixels of image ``index``."""
    import tifffile

    try:
        images = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
        images = images if isinstance(images, list) else [images]
        pixels = images[min(index, len(images) - 1)]["Pixels"]
    except (KeyError, IndexError, TypeError, ValueError):  # unusual OME: keep nothing
        return {}
    return {k: v for k, v in pixels.items() if k.startswith(("PhysicalSize", "TimeIncrement"))}


def ome_sampling(cal: Calibration) -> dict[str, Any]:
    """OME ``PhysicalSize*`` attributes from resolution tags (and the ImageJ unit and
    spacing): for an OME output of a non-OME input."""
    if cal.resolution is None or not all(r > 0 for r in cal.resolution):
        return {}
    unit = str(cal.imagej.get("unit", ""))
    unit = _OME_UNITS.get(unit, unit if unit in _OME_UNITS.values() else "")
    per_micron = {2: 25400.0, 3: 10000.0}.get(cal.resolution_unit)  # inch, centimetre
    if per_micron is not None and not unit:
        sizes, unit = [per_micron / r for r in cal.resolution], "µm"
    elif unit:
        sizes = [1 / r for r in cal.resolution]
    else:
        return {}
    out = {"PhysicalSizeX": sizes[0], "PhysicalSizeXUnit": unit,
           "PhysicalSizeY": sizes[1], "PhysicalSizeYUnit": unit}
    if "spacing" in cal.imagej:
        out.update(PhysicalSizeZ=float(cal.imagej["spacing"]), PhysicalSizeZUnit=unit)
    return out


def tiff_options(calibration: Calibration | None, axes: str, name: str,
                 bigtiff: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(TiffWriter options, write options)`` that keep ``axes`` and the calibration: OME
    when the input was OME or the output ``name`` ends in .ome.tif(f); else ImageJ when the
    input was ImageJ and its axes fit an ImageJ hyperstack (classic TIFF only); else
    tifffile's own metadata (axes, the ImageJ values as plain keys). Resolution tags are
    written whenever the input had them."""
    cal = calibration or Calibration()
    write: dict[str, Any] = {"metadata": {"axes": axes}}
    if cal.resolution is not None:
        write.update(resolution=cal.resolution, resolutionunit=cal.resolution_unit)
    if cal.ome or name.lower().endswith((".ome.tif", ".ome.tiff")):
        write["metadata"].update(cal.ome or ome_sampling(cal))
        return {"bigtiff": bigtiff, "ome": True}, write
    ordered = [IMAGEJ_ORDER.find(a) for a in axes]
    if cal.imagej and not bigtiff and -1 not in ordered and ordered == sorted(ordered):
        write["metadata"].update(cal.imagej)
        return {"imagej": True}, write
    write["metadata"].update(cal.imagej)
    return {"bigtiff": bigtiff}, write

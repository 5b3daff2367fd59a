"""``python -m napari_noise2score`` runs the command line."""

import sys

from .cli import main

sys.exit(main())

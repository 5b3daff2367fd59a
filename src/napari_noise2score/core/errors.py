"""Exceptions with messages meant for the user."""


class Noise2ScoreError(ValueError):
    """A problem with the user's input, parameters or files: the message says what to do."""


class ModelFileError(Noise2ScoreError):
    """A model file that is missing, corrupt, truncated or not a napari-noise2score model."""


class Cancelled(Exception):
    """The user asked to stop; nothing was written."""


class InputFileError(Noise2ScoreError):
    """An input file that is missing, truncated, corrupt or in an unsupported format."""


class AxesError(Noise2ScoreError):
    """The axes of an input cannot be inferred or do not fit it: give the axes."""


class OutputError(Noise2ScoreError):
    """An output that cannot be written: read-only or full disk, or it would overwrite the input."""


class ExportError(Noise2ScoreError):
    """A model the bioimage.io export cannot reproduce exactly, or a package it cannot write."""

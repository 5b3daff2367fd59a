"""Exceptions with messages meant for the user."""


class Noise2ScoreError(ValueError):
    """A problem with the user's input, parameters or files: the message says what to do."""


class ModelFileError(Noise2ScoreError):
    """A model file that is missing, corrupt, truncated or not a napari-noise2score model."""


class Cancelled(Exception):
    """The user asked to stop; nothing was written."""

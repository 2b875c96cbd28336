"""Typed errors: every one names the file or parameter at fault and says what to do.

The CLI turns any ``A2XError`` into a one-line message and exit code 2; DCC adapters
turn them into reports. Nothing here imports heavy dependencies.
"""

from __future__ import annotations

from pathlib import Path


class A2XError(Exception):
    """Base of every error a2x raises on purpose (bad input, bad model, cancelled work)."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | Path | None = None, hint: str = "") -> None:
        self.path = str(path) if path is not None else None
        self.hint = hint
        text = f"{self.path}: {message}" if self.path else message
        if hint:
            text = f"{text}; {hint}"
        super().__init__(text)


class AudioError(A2XError):
    """An audio file is missing, unreadable or unusable."""


class AudioNotFoundError(AudioError):
    """The audio path does not exist."""


class AudioDecodeError(AudioError):
    """The file exists but cannot be decoded as audio."""


class AudioEmptyError(AudioError):
    """The file decodes to no samples, or to fewer than one frame's worth."""


class AudioInvalidSamplesError(AudioError):
    """The file contains NaN or infinite samples."""


class ModelError(A2XError):
    """A model folder or model.json is missing, incomplete or inconsistent."""


class ModelPackageError(ModelError):
    """A file inside a model folder has the wrong keys, shapes, dtypes or values."""


class ParameterError(A2XError):
    """A parameter (CLI flag, API argument, config value) is out of range or malformed."""


class EngineError(A2XError):
    """An inference engine cannot be created or does not match the model's network."""


class OutputError(A2XError):
    """An output path cannot be written."""


class CancelledError(A2XError):
    """Work was cancelled by the user (Esc, Cancel button, Ctrl-C)."""

    exit_code = 130

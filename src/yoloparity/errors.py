"""Errors that name the bad input.

Every failure a user can cause (a missing file, a corrupt image, a checkpoint we cannot read)
is raised as a subclass of :class:`YoloParityError` whose message names the file and the
problem in one line; the CLI prints that line and exits with code 2 instead of a traceback.
"""

from __future__ import annotations

import os


class YoloParityError(Exception):
    """Base class of every error caused by the user's input."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class InputNotFoundError(YoloParityError):
    """A path the user gave does not exist or holds nothing we can use."""


class BadImageError(YoloParityError):
    """An image file that cannot be decoded (truncated, not an image)."""


class CheckpointError(YoloParityError):
    """A ``.pt`` file that is not a readable YOLO checkpoint."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose pickle refers to code outside the allowlist (it could run code on load)."""


class UnsupportedModuleError(CheckpointError):
    """A checkpoint whose architecture uses a block we do not implement."""


class ModelFileError(YoloParityError):
    """An exported model (ONNX, ...) whose inputs, outputs or metadata we cannot interpret."""


class BackendUnavailableError(YoloParityError):
    """A backend or device asked for that is not installed or not present on this machine."""


def read_json_file(path: str, what: str, error: type[YoloParityError]):
    """Parse a JSON file the user named; a missing or unparsable file is an error naming it."""
    import json

    if not os.path.isfile(path):
        raise InputNotFoundError(path, f"no such {what}")
    try:
        with open(path) as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(path, f"not a valid {what} (invalid JSON: {exc})") from exc

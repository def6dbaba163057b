"""The one atomic write: a file appears whole or not at all (a temporary file beside it, renamed into place).

Shards of a distributed run, quantized models, exports in the cache, reports and records all go
through here, so an interrupted run never leaves a half-written file that a later ``--resume`` or a
reader would take for a finished one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from typing import Any, Iterator


def _umask() -> int:
    """The process's umask, read without changing it (Linux reports it in /proc; elsewhere it is set and put back
    at once, the only way the C library offers)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def output_mode() -> int:
    """The mode a new file gets from ``open()``: 0o666 less the umask. ``mkstemp`` makes its file 0o600 (private
    while it is written); what we hand the user gets the mode any other tool's output would."""
    return 0o666 & ~_umask()


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """A temporary path in ``path``'s folder to write to; renamed to ``path`` when the block ends without error,
    removed when it fails. ``suffix`` keeps an extension writers insist on (``.onnx``, ``.npz``)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=suffix + ".tmp")
    os.close(fd)
    try:
        yield tmp
        if os.path.exists(tmp):
            os.chmod(tmp, output_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: str | os.PathLike, payload: Any, indent: int | None = None) -> None:
    """Write JSON to ``path`` atomically (a reader never sees half a file)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=indent)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write text to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)


def copy_file(src: str, out: str | os.PathLike) -> None:
    """Copy ``src`` to ``out`` atomically."""
    with atomic_path(out) as tmp:
        shutil.copyfile(src, tmp)

"""The head formats by name: one module each, one line each here."""

from __future__ import annotations

from . import dets, e2e, v5, v8
from .base import Candidates, HeadFormat

HEAD_FORMATS: dict[str, HeadFormat] = {f.name: f for f in (v5.FORMAT, v8.FORMAT, e2e.FORMAT, dets.FORMAT)}


def head_format(name: str) -> HeadFormat:
    """The format registered as ``name``; an unknown name is refused with the known ones."""
    try:
        return HEAD_FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown head format {name!r}; known: {', '.join(HEAD_FORMATS)}") from None


__all__ = ["HEAD_FORMATS", "Candidates", "HeadFormat", "head_format"]

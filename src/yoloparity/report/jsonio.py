"""Results as JSON for machines: one object per image, in input order."""

from __future__ import annotations

from typing import Iterable

from ..io.atomic import write_json
from ..io.detections import to_rows
from ..types import Result


def result_to_dict(result: Result) -> dict:
    d = result.detections
    h, w = result.letterbox.orig_hw if result.letterbox else (None, None)
    names = result.names
    return {
        "file": result.path,
        "width": w,
        "height": h,
        "detections": to_rows(d, names),
    }


def result_row(result: Result) -> dict:
    """The JSON Lines row of one input: its detections, or the reason it was skipped."""
    if result.ok:
        return result_to_dict(result)
    return {"file": result.path, "error": result.error, "stage": "inference" if result.failed else "input"}


def write_results_json(results: Iterable[Result], path: str) -> int:
    """Write the processed (not skipped) results; returns how many were written."""
    items = [result_to_dict(r) for r in results if r.ok]
    write_json(path, items, indent=1)
    return len(items)

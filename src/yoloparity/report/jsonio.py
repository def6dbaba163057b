"""Results as JSON for machines: one object per image, in input order."""

from __future__ import annotations

import json
import os
from typing import Iterable

from ..types import Result


def result_to_dict(result: Result) -> dict:
    d = result.detections
    h, w = result.letterbox.orig_hw if result.letterbox else (None, None)
    names = result.names
    return {
        "file": result.path,
        "width": w,
        "height": h,
        "detections": [
            {
                "box": [round(float(v), 3) for v in d.boxes[k]],
                "score": round(float(d.scores[k]), 5),
                "class_id": int(d.class_ids[k]),
                "class_name": names[int(d.class_ids[k])] if int(d.class_ids[k]) < len(names) else str(int(d.class_ids[k])),
            }
            for k in range(len(d))
        ],
    }


def write_results_json(results: Iterable[Result], path: str) -> int:
    """Write the processed (not skipped) results; returns how many were written."""
    items = [result_to_dict(r) for r in results if r.ok]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(items, fh, indent=1)
    os.replace(tmp, path)
    return len(items)

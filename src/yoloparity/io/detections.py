"""Detections in every exchange form, converted in one place (float32 values round-trip exactly through JSON).

- ``to_dict``/``from_dict``: the column form run records and shards store (``boxes``, ``scores``, ``class_ids``);
- ``to_rows``: one object per detection with its class name, as ``predict --save-json`` writes;
- ``result_row``: the JSON Lines row of one input (its detections, or why it was skipped), the one schema every
  predict engine writes;
- ``to_coco``: COCO results (xywh, category ids, rounded as the reference validators write them);
- ``to_supervision``: a ``supervision.Detections`` for users of that library (optional package).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import BackendUnavailableError
from ..types import Detections, Result


def to_dict(d: Detections) -> dict[str, list]:
    """The column form (``boxes``, ``scores``, ``class_ids``) run records and shards store."""
    return {"boxes": d.boxes.tolist(), "scores": d.scores.tolist(), "class_ids": d.class_ids.tolist()}


def from_dict(data: dict[str, Any]) -> Detections:
    """Detections from the column form, with their float32/int32 dtypes."""
    return Detections(np.asarray(data["boxes"], np.float32).reshape(-1, 4), np.asarray(data["scores"], np.float32),
                      np.asarray(data["class_ids"], np.int32))


def class_name(names: Sequence[str], class_id: int) -> str:
    """The class's name, or its id as text for an id outside the names."""
    return names[class_id] if 0 <= class_id < len(names) else str(class_id)


def to_rows(d: Detections, names: Sequence[str]) -> list[dict[str, Any]]:
    """One object per detection: box xyxy (3 decimals), score (5), class id and name."""
    return [{"box": [round(float(v), 3) for v in d.boxes[k]], "score": round(float(d.scores[k]), 5),
             "class_id": int(d.class_ids[k]), "class_name": class_name(names, int(d.class_ids[k]))} for k in range(len(d))]


def to_coco(d: Detections, image_id: int, category_ids: Sequence[int]) -> list[dict[str, Any]]:
    """COCO results of one image, by score descending then index (the order ties keep everywhere)."""
    boxes, scores, classes = d.boxes.tolist(), d.scores.tolist(), d.class_ids.tolist()
    out = []
    for k in sorted(range(len(scores)), key=lambda k: (-scores[k], k)):
        x1, y1, x2, y2 = boxes[k]
        out.append({"image_id": image_id, "category_id": int(category_ids[classes[k]]),
                    "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                    "score": round(scores[k], 5)})
    return out


def to_supervision(d: Detections, names: Sequence[str] | None = None):
    """A ``supervision.Detections`` (needs ``pip install supervision``)."""
    try:
        import supervision as sv
    except ImportError:

        raise BackendUnavailableError(None, "to_supervision needs the package supervision (pip install supervision)") from None
    data = {"class_name": np.asarray([class_name(names, int(c)) for c in d.class_ids])} if names else {}
    return sv.Detections(xyxy=d.boxes.astype(np.float32), confidence=d.scores.copy(), class_id=d.class_ids.astype(int),
                         data=data)


def result_row(result: Result) -> dict:
    """The JSON Lines row of one input: its file, size and detections, or the reason it was skipped."""
    if not result.ok:
        return {"file": result.path, "error": result.error, "stage": "inference" if result.failed else "input"}
    h, w = result.letterbox.orig_hw if result.letterbox else (None, None)
    return {"file": result.path, "width": w, "height": h, "detections": to_rows(result.detections, result.names)}

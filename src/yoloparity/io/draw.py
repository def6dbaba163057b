"""Draw detections on the original image (for ``--save-dir``)."""

from __future__ import annotations

import colorsys
import os
import re

import cv2
import numpy as np

from ..types import Result


def _color(class_id: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((class_id * 0.61803398875) % 1.0, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def draw(image: np.ndarray, result: Result) -> np.ndarray:
    """The image with its detections drawn (boxes and labels in per-class colours), as a new array."""
    canvas = image.copy()
    thickness = max(round(sum(canvas.shape[:2]) / 2 * 0.003), 2)
    d = result.detections
    for k in range(len(d)):
        x1, y1, x2, y2 = (int(round(float(v))) for v in d.boxes[k])
        cid = int(d.class_ids[k])
        color = _color(cid)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        name = result.names[cid] if cid < len(result.names) else str(cid)
        label = f"{name} {float(d.scores[k]):.2f}"
        scale = thickness / 3
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, max(thickness - 1, 1))
        top = y1 - th - 4 if y1 - th - 4 >= 0 else y1
        cv2.rectangle(canvas, (x1, top), (x1 + tw + 2, top + th + 4), color, -1, cv2.LINE_AA)
        cv2.putText(canvas, label, (x1 + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), max(thickness - 1, 1), cv2.LINE_AA)
    return canvas


def output_name(path: str) -> str:
    """File name for a drawn result: the image's name, or ``video_frame12.jpg`` for a video frame."""
    base = os.path.basename(path)
    match = re.match(r"(.+)#frame=(\d+)$", base)
    if match:
        stem = os.path.splitext(match.group(1))[0]
        return f"{stem}_frame{int(match.group(2)):06d}.jpg"
    stem, ext = os.path.splitext(base)
    return base if ext.lower() in (".jpg", ".jpeg", ".png", ".bmp") else f"{stem or base}.jpg"


def save_drawn(result: Result, image: np.ndarray, folder: str) -> str:
    """Draw and write the image into ``folder`` under its own name; returns the path written."""
    os.makedirs(folder, exist_ok=True)
    out = os.path.join(folder, output_name(result.path))
    if not cv2.imwrite(out, draw(image, result)):
        raise OSError(f"{out}: could not write image")
    return out

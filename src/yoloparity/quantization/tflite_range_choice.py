"""How a full-integer TFLite file's activation ranges are set: the converter's min/max, or narrowed afterwards to a
percentile or by per-tensor MSE (:mod:`.tflite_ranges`, run in the converter's environment).

Why percentile 99.999 is the default, measured (each family's one min/max file narrowed five ways, scored on all
206 coco-val-mini images; BENCHMARKS.md, "Choosing the full-integer ranges"): no narrowing is best on every family;
99.999 is within a point on three of four (YOLOv10n −1.13) with the smallest mean loss (0.84 point). MSE (each
tensor's range of least clipping + rounding error) is also within a point on three (YOLO26n −1.17) and the best on
YOLOv8n and YOLOv10n (mean 0.92); 99.9999 and 99.99 lose more than a point on two families each. A choice among
them by mAP on the calibration images was measured and dropped: its differences (0.1–0.3 point) are below the noise
between image sets, and its picks lost more than the fixed 99.999 (YOLOv5n 1.39 points, YOLO26n 1.25).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from typing import Callable

from ..errors import ModelFileError

# --calib-method → (tflite_ranges method, percentile); minmax keeps the converter's ranges ("none": only the
# symmetric right operands of activation products, which every method gets)
NARROWINGS = {"percentile": ("percentile", 99.999), "mse": ("mse", 0.0), "minmax": ("none", 0.0)}
MINMAX_LABEL = "minmax (TFLite converter)"


@dataclass(frozen=True)
class RangeChoice:
    """The ranges a run kept: ``method`` (the --calib-method) and the range step's report."""

    method: str
    report: dict = field(default_factory=dict)

    @property
    def narrowed(self) -> bool:
        """Whether the converter's min/max ranges were narrowed (percentile or mse)."""
        return self.method != "minmax"

    def method_words(self) -> str:
        """The report's ``calib_method``: the ranges kept and how they were reached."""
        if not self.narrowed:
            return MINMAX_LABEL
        how = f"percentile {NARROWINGS[self.method][1]}" if self.method == "percentile" else "mse (per tensor)"
        return f"{how} (the converter's min/max ranges narrowed)"

    def notes(self) -> list[str]:
        """What the range step changed, for the report's notes."""
        n, notes = self.report, []
        if self.narrowed:
            how = f"the {n['percentile']} percentile" if self.method == "percentile" else "the least squared error range"
            notes.append(f"activation ranges: the converter's min/max narrowed to {how} of {n['images']} calibration "
                         f"images in {n['groups_narrowed']} of {n['tensors']} activations (resolution "
                         f"x{n['resolution_gain_median']:.2f} median, x{n['resolution_gain_max']:.2f} at most); "
                         "--calib-method minmax keeps them")
        if n.get("groups_symmetric"):
            notes.append(f"attention's keys and values (the right operands of its matrix products; "
                         f"{n['groups_symmetric']} shared range(s)) given zero point 0, a symmetric range, so LiteRT's "
                         "XNNPACK delegate runs those products in int8")
        return notes


def set_ranges(python: str, tflite: str, calib_npy: str, method: str, log: Callable[[str], None]) -> RangeChoice:
    """The ranges of the full-integer file ``tflite`` (min/max from the converter) set in place by ``method``:
    ``minmax`` keeps them, ``percentile``/``mse`` narrow them on the calibration images in ``calib_npy``; every
    method makes the right operands of activation products symmetric (:mod:`.tflite_ranges`). The file is rewritten
    without what was appended to it: embed its metadata afterwards."""
    how, percentile = NARROWINGS[method]
    log(f"narrowing the activation ranges ({method}) on the calibration images" if how != "none"
        else "making attention's matrix-product operands symmetric")
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tflite_ranges.py")
    out = tflite + ".narrowed"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([python, script, tflite, out, calib_npy, "--method", how, "--percentile", str(percentile)],
                          capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines or not os.path.exists(out):
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
        raise ModelFileError(tflite, f"narrowing the activation ranges failed (exit {proc.returncode}): {tail[-600:]}")
    os.replace(out, tflite)
    return RangeChoice(method, json.loads(lines[-1]))

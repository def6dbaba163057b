"""Where a full-integer TFLite file's error comes from: its tensors against the float32 file of the same conversion.

``yoloparity quantize --format tflite-int8`` writes ``X.tflite`` (full integer) and ``X-float32.tflite`` (the same
conversion before quantization; tensor names are shared). Both run on the same letterboxed coco-val-mini images
with every intermediate tensor kept (LiteRT's built-in kernels); each int8 tensor is dequantized and compared with
its float twin as a signal-to-quantization-noise ratio, SQNR = 10 log10(sum f² / sum (q - f)²), summed over the
images. Printed: each raw head map's SQNR and, for the score maps, the rms error of the score (sigmoid) where the
float score is above 0.05 — the error that moves detections; then the ops that lose the most SQNR themselves
(their output's SQNR below their inputs' worst), which is where ranges or kernels add error, not where it arrives.

Why: a full-integer file's mAP drop says how much, not where; range rules (percentile, MSE, symmetric keys) were
chosen by mAP on 206 images, whose noise (±0.5 point) is as large as the differences (BENCHMARKS.md, "Where the
full-integer error comes from"). SQNR is measured per tensor and moves with the ranges, not with which images rank.

    .venv/bin/python bench/tflite_sqnr.py X.tflite [--float X-float32.tflite] [--images 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

from benchmarks_md import assets_dir  # noqa: E402


def letterboxed(path: str, size: int) -> np.ndarray:
    """(1, size, size, 3) float32 RGB 0..1, NHWC as the TFLite file takes it: the image as our quantize reads it."""
    from yoloparity.data.sources import read_image
    from yoloparity.pipeline.letterbox import letterbox, to_input

    return np.ascontiguousarray(to_input(letterbox(read_image(path), size, "square")[0]).transpose(1, 2, 0)[None])


def _interpreter(path: str):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=path, experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    return interpreter


def _values(interpreter, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every float or int8 tensor of one run, dequantized to float64, by name."""
    detail = interpreter.get_input_details()[0]
    if detail["dtype"] == np.int8:
        scale, zero_point = detail["quantization"]
        x = np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    out = {}
    for t in interpreter.get_tensor_details():
        try:
            v = interpreter.get_tensor(t["index"])
        except ValueError:
            continue
        if v is None or v.size < 2:
            continue
        if v.dtype == np.int8 and t["quantization"][0] > 0:
            scale, zero_point = t["quantization"]
            out[t["name"]] = (v.astype(np.float64) - zero_point) * scale
        elif v.dtype == np.float32:
            out[t["name"]] = v.astype(np.float64)
    return out


def _score_maps(path: str, names: list[str]) -> set[str]:
    """The output names whose values are logits read through a sigmoid (from the file's raw-maps metadata)."""
    try:
        meta = ast.literal_eval(zipfile.ZipFile(path).read("metadata.txt").decode())
        layout, order = json.loads(meta["yoloparity.raw_maps"]), meta["yoloparity.raw_maps_order"]
    except (KeyError, zipfile.BadZipFile, ValueError, SyntaxError):
        return set()
    return {n for i, n in enumerate(order) if layout.get("kind") == "anchors" or i % 2 == 1} & set(names)


def _twin(output: str, float_outputs: set[str]) -> str:
    """The float file's name for an int8 output: the converter names the k-th output ``...:k`` in one file and
    ``Identity_k`` (``Identity`` for 0) in the other."""
    if output in float_outputs:
        return output
    k = output.rsplit(":", 1)[-1]
    return "Identity" if k == "0" else f"Identity_{k}"


def measure(int8_path: str, float_path: str, images: list[str], size: int) -> dict:
    """Summed squared errors and signals per shared tensor; per output map, SQNR and the score error."""
    q, f = _interpreter(int8_path), _interpreter(float_path)
    float_out = {d["name"] for d in f.get_output_details()}
    outputs = [d["name"] for d in q.get_output_details()]
    scores = _score_maps(int8_path, outputs)
    sums: dict[str, list[float]] = {}
    score_err: dict[str, list[float]] = {}
    for image in images:
        x = letterboxed(image, size)
        a, b = _values(q, x), _values(f, x)
        for name, v in a.items():
            ref = b.get(_twin(name, float_out) if name in outputs else name)
            if ref is None or ref.shape != v.shape:
                continue
            s = sums.setdefault(name, [0.0, 0.0])
            s[0] += float(((v - ref) ** 2).sum())
            s[1] += float((ref ** 2).sum())
            if name in scores:
                keep = ref > np.log(0.05 / 0.95)
                e = score_err.setdefault(name, [0.0, 0])
                e[0] += float(((1 / (1 + np.exp(-v[keep])) - 1 / (1 + np.exp(-ref[keep]))) ** 2).sum())
                e[1] += int(keep.sum())
    sqnr = {n: 10 * np.log10(s / e) if e > 0 else float("inf") for n, (e, s) in sums.items() if s > 0}
    maps = [{"output": n, "shape": list(q.get_tensor(d["index"]).shape), "sqnr_db": round(sqnr.get(n, float("nan")), 2),
             **({"score_rms_error": round(float(np.sqrt(score_err[n][0] / max(score_err[n][1], 1))), 4),
                 "scored_cells": score_err[n][1]} if n in score_err else {})}
            for d in q.get_output_details() for n in [d["name"]]]
    return {"maps": maps, "sqnr": sqnr, "ops": _op_losses(q, sqnr)}


def _op_losses(interpreter, sqnr: dict[str, float]) -> list[dict]:
    """Each op whose output was compared: its SQNR and what it lost against its inputs' worst. An input that was not
    compared (a convolution's output is named differently in the two files) counts as the worst compared tensor
    upstream of it, so a convolution, sigmoid and multiply (one SiLU layer) is charged together to the multiply; a
    sigmoid's output (fixed range, inside that layer) is passed through the same way, not charged."""
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    reach: dict[int, float] = {}  # tensor -> its SQNR, or the worst compared SQNR upstream of it
    rows = []
    for position, op in enumerate(interpreter._get_ops_details()):
        upstream = [reach[i] for i in op["inputs"] if i in reach]
        inside = op["op_name"] == "LOGISTIC"
        for i in op["outputs"]:
            if names.get(i) in sqnr and not inside:
                reach[i] = sqnr[names[i]]
            elif upstream:
                reach[i] = min(upstream)
        out = None if inside else next((names[i] for i in op["outputs"] if names.get(i) in sqnr), None)
        if out is not None and upstream and np.isfinite(min(upstream)):
            rows.append({"position": position, "op": op["op_name"], "output": out, "sqnr_db": round(sqnr[out], 2),
                         "loss_db": round(min(upstream) - sqnr[out], 2)})
    return rows


def main() -> int:
    """The command line of the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("int8", help="the full-integer file (yoloparity quantize --format tflite-int8)")
    parser.add_argument("--float", dest="float_path", help="the float32 file of the same conversion "
                        "(default: INT8's name with -float32, as quantize writes it)")
    parser.add_argument("--images", type=int, default=8, help="coco-val-mini images, the last N (default 8)")
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--top", type=int, default=12, help="ops listed by the SQNR they lose (default 12)")
    parser.add_argument("--json", help="write every figure here")
    args = parser.parse_args()
    float_path = args.float_path or os.path.splitext(args.int8)[0] + "-float32.tflite"
    for path in (args.int8, float_path):
        if not os.path.exists(path):
            parser.error(f"{path}: no such file")
    images = sorted(str(p) for p in (assets_dir(ROOT) / "coco-val-mini" / "images").glob("*.jpg"))[-args.images:]
    result = measure(args.int8, float_path, images, args.size)
    print(f"{args.int8} against {float_path}, {len(images)} images, {len(result['sqnr'])} tensors compared")
    print("| output | shape | SQNR dB | score rms error (float score > 0.05) |\n| --- | --- | ---: | ---: |")
    for m in result["maps"]:
        print(f"| {m['output']} | {'x'.join(map(str, m['shape']))} | {m['sqnr_db']:.2f} | "
              f"{m.get('score_rms_error', '')} |")
    print(f"\nops that lose the most SQNR (of {len(result['ops'])} compared):")
    for r in sorted(result["ops"], key=lambda r: -r["loss_db"])[:args.top]:
        print(f"  op {r['position']:4d} {r['op']:18s} {r['loss_db']:+6.2f} dB -> {r['sqnr_db']:6.2f} dB  {r['output'][-60:]}")
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "images": len(images), "int8": args.int8, "float": float_path},
                                              indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

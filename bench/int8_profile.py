"""Where an int8 model's time goes: ONNX Runtime's profiler on the float and the int8 file, grouped by what runs.

ONNX Runtime fuses the QDQ graph at load (DequantizeLinear → Conv → QuantizeLinear becomes one QLinearConv), so the
profile's kernels are what is left after fusion: int8 kernels (QLinear*), float convolutions and elementwise ops
(the islands kept float: the head's decode tail and logit convolutions, and whatever accuracy control reverted),
the QuantizeLinear/DequantizeLinear at the borders of those islands, and layout ops (Reshape, Transpose, Concat,
Split, Slice, Resize, MaxPool). Each group's share of the per-image kernel time says what the float islands cost.

    .venv/bin/python bench/int8_profile.py FLOAT.onnx INT8.onnx [--runs 20] [--threads 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import tempfile
from collections import defaultdict

import numpy as np

LAYOUT = {"Reshape", "Transpose", "Concat", "Split", "Slice", "Resize", "MaxPool", "Gather", "Unsqueeze", "Squeeze",
          "Shape", "Identity", "Flatten"}


def group(op: str) -> str:
    """The profile group of one kernel's op type."""
    if op in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"):
        return "Q/DQ at float borders"
    if op.startswith("QLinear") or op in ("QGemm", "MatMulInteger", "ConvInteger", "QAttention"):
        return "int8 kernels"
    if op in ("Conv", "FusedConv", "ConvTranspose", "NhwcFusedConv"):
        return "float convolutions"
    if op in LAYOUT:
        return "layout (reshape/transpose/concat/split/slice/resize/pool)"
    return "float elementwise (sigmoid/mul/add/sub/div/softmax/pow)"


def profile(path: str, x: np.ndarray, runs: int, threads: int) -> dict:
    """Per-image kernel milliseconds of ``path`` by group and by op type, from ONNX Runtime's own profiler."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "p")
        session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for _ in range(3):
            session.run(None, {name: x})
        events_before = 0
        for _ in range(runs):
            session.run(None, {name: x})
        trace = json.load(open(session.end_profiling()))
    del events_before
    by_op: dict[str, float] = defaultdict(float)
    runs_seen = sum(1 for e in trace if e.get("name") == "model_run")
    for e in trace:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            by_op[e["args"].get("op_name", "?")] += e["dur"] / 1000.0
    scale = 1.0 / max(runs_seen, 1)
    by_op = {op: ms * scale for op, ms in by_op.items()}
    by_group: dict[str, float] = defaultdict(float)
    for op, ms in by_op.items():
        by_group[group(op)] += ms
    return {"kernel_ms": sum(by_op.values()), "by_group": dict(by_group), "by_op": by_op}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("float_model")
    parser.add_argument("int8_model")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    import onnx

    shape = [d.dim_value or 1 for d in onnx.load(args.int8_model, load_external_data=False).graph.input[0].type.tensor_type.shape.dim]
    rng = np.random.default_rng(0)
    images = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "assets", "images", "*.jpg")))
    x = rng.random(shape, dtype=np.float32)
    if images:
        import cv2

        from yoloparity.pipeline.letterbox import letterbox, to_input

        x = to_input(letterbox(cv2.imread(images[0]), shape[2], "square")[0])[None]
    result = {"float": profile(args.float_model, x, args.runs, args.threads),
              "int8": profile(args.int8_model, x, args.runs, args.threads)}
    for kind in ("float", "int8"):
        r = result[kind]
        print(f"{kind}: {r['kernel_ms']:.1f} ms of kernels per image")
        for g, ms in sorted(r["by_group"].items(), key=lambda kv: -kv[1]):
            print(f"  {g:<60} {ms:7.2f} ms  {100 * ms / r['kernel_ms']:5.1f} %")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

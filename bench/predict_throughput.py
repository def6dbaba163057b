"""End-to-end predict throughput vs the bare ONNX Runtime forward pass on the same tensors.

End to end = decode + letterbox + inference + NMS over the 206 coco-val-mini images, as
``yoloparity predict`` runs it (decoding in worker threads overlapping inference). The baseline
is ONNX Runtime's ``session.run`` alone over exactly the batches that run formed (recorded, then
replayed), on a stock session of the same file with the same thread count, in the same process.
Repeats alternate their order and the ratio is the median of per-repeat ratios, so drifts in
machine speed hit both sides alike.

    .venv/bin/python bench/predict_throughput.py            # prints and updates BENCHMARKS.md
    .venv/bin/python bench/predict_throughput.py --repeats 5 --batch 8 --threads 2 --no-write
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from benchmarks_md import publish  # noqa: E402

import yoloparity  # noqa: E402
from yoloparity.data.sources import resolve_source  # noqa: E402

ASSETS = Path(os.environ.get("YOLOPARITY_ASSETS", ROOT.parent / "shared" / "assets"))
MARK_BEGIN = "<!-- bench:predict_throughput:begin -->"
MARK_END = "<!-- bench:predict_throughput:end -->"


class RecordingBackend:
    """Wraps a backend and keeps a copy of every batch it is given."""

    def __init__(self, inner):
        self.inner = inner
        self.spec, self.name, self.device, self.precision = inner.spec, inner.name, inner.device, inner.precision
        self.constraints = inner.constraints
        self.batches: list[np.ndarray] = []

    def run(self, batch):
        self.batches.append(batch.copy())
        return self.inner.run(batch)


def end_to_end(model, items, args) -> tuple[float, dict]:
    predictor = model.predictor(batch=args.batch, mode=args.mode, decode_threads=args.workers)
    t0 = time.perf_counter()
    n = sum(1 for r in predictor.run(items) if r.ok)
    wall = time.perf_counter() - t0
    return n / wall, predictor.times.to_dict()


def bare_forward(session, input_name, batches) -> float:
    t0 = time.perf_counter()
    for b in batches:
        session.run(None, {input_name: b})
    wall = time.perf_counter() - t0
    return sum(len(b) for b in batches) / wall


def stock_session(path: str, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--workers", type=int, default=2, help="decode threads")
    parser.add_argument("--mode", default="rect", choices=["rect", "square"])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--no-write", action="store_true", help="print only; do not update BENCHMARKS.md")
    args = parser.parse_args()

    weights = ASSETS / "models" / "yolov5n.pt"
    images = str(ASSETS / "coco-val-mini" / "images")
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = yoloparity.export(str(weights), os.path.join(tmp, "yolov5n.onnx"), dynamic=True)
        model = yoloparity.load_model(onnx_path, backend="onnxruntime", threads=args.threads)
        items = resolve_source(images)
        recorder = RecordingBackend(model.backend)
        recording = yoloparity.YoloModel(recorder, onnx_path)
        end_to_end(recording, items, args)  # warm-up, and records the exact batches
        batches = recorder.batches
        input_name = model.backend.input.name
        stock = stock_session(onnx_path, args.threads)
        e2e, bare, stages = [], [], None
        ratios = []
        for k in range(args.repeats):
            if k % 2:  # alternate the order so drifts in machine speed hit both sides alike
                bare.append(bare_forward(stock, input_name, batches))
            rate, stages = end_to_end(model, items, args)
            e2e.append(rate)
            if not k % 2:
                bare.append(bare_forward(stock, input_name, batches))
            ratios.append(e2e[-1] / bare[-1])
    e2e_med, bare_med = statistics.median(e2e), statistics.median(bare)
    ratio = statistics.median(ratios)
    ms = stages["ms_per_image"]
    shapes = sorted({b.shape[2:] for b in batches})
    lines = [
        MARK_BEGIN,
        "## predict throughput: end to end vs bare ONNX Runtime forward",
        "",
        f"- command: `.venv/bin/python bench/predict_throughput.py --batch {args.batch} --threads {args.threads} "
        f"--workers {args.workers} --mode {args.mode} --repeats {args.repeats}`",
        f"- when: {datetime.date.today().isoformat()}; machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"onnxruntime {__import__('onnxruntime').__version__} CPU EP, fp32; model: official YOLOv5n exported by `yoloparity export --dynamic`",
        f"- data: 206 images of coco-val-mini, {args.mode} letterbox at 640 ({len(shapes)} input shapes), "
        f"{len(batches)} shape-bucketed batches of up to {args.batch}",
        "",
        "| measure | images/s (median of %d) | runs |" % args.repeats,
        "| --- | ---: | --- |",
        f"| bare `session.run` on the same batches (stock session) | {bare_med:.1f} | {', '.join(f'{v:.1f}' for v in bare)} |",
        f"| end to end (decode + letterbox + inference + NMS) | {e2e_med:.1f} | {', '.join(f'{v:.1f}' for v in e2e)} |",
        f"| **ratio end to end / bare forward** (median of per-repeat ratios) | **{ratio:.3f}** | "
        f"{', '.join(f'{v:.2f}' for v in ratios)}; goal >= 0.85 |",
        "",
        f"Per-stage time of the last end-to-end run, ms per image: decode {ms['decode']:.1f}, letterbox {ms['letterbox']:.1f} "
        f"(both in {args.workers} worker threads, overlapping inference), inference {ms['inference']:.1f}, NMS {ms['nms']:.2f}; "
        f"the inference loop waited {ms['wait']:.1f} ms per image for decoded images.",
        MARK_END,
    ]
    section = "\n".join(lines)
    publish(section, ROOT, MARK_BEGIN, MARK_END, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())

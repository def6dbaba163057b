"""What an audit costs: one audit of K configurations vs the sum of K plain predict runs of them.

The audit keeps every stage of every image (letterboxed tensors, raw outputs, candidates) and
compares them; the goal is that this costs at most 1.2x running the same configurations as plain
``predict``. Both sides run in this process, after a warm-up, on the same images, on models loaded
once (loading is not timed on either side).

    .venv/bin/python bench/audit_cost.py                 # prints and updates BENCHMARKS.md
    .venv/bin/python bench/audit_cost.py --images 64 --no-write
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
ASSETS = Path(os.environ.get("YOLOPARITY_ASSETS", ROOT.parent / "shared" / "assets")).resolve()
from benchmarks_md import publish  # noqa: E402

MARK_BEGIN, MARK_END = "<!-- bench:audit_cost:begin -->", "<!-- bench:audit_cost:end -->"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=206)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    import statistics

    import yoloparity
    from yoloparity.auditing import audit as audit_mod
    from yoloparity.auditing.capture import ConfigRunner
    from yoloparity.auditing.spec import RunConfig
    from yoloparity.types import Thresholds

    weights = str(ASSETS / "models" / "yolov5n.pt")
    images = sorted(str(p) for p in (ASSETS / "coco-val-mini" / "images").glob("*.jpg"))[: args.images]
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = yoloparity.export(weights, os.path.join(tmp, "yolov5n.onnx"), dynamic=True)
        configs = [RunConfig(batch=1), RunConfig(batch=16), RunConfig(backend="onnxruntime", batch=1, model=onnx_path),
                   RunConfig(backend="onnxruntime", batch=16, model=onnx_path)]
        models = {c: yoloparity.load_model(c.model or weights, backend=c.backend) for c in configs}
        runners = [ConfigRunner(weights, c, Thresholds(), None) for c in configs]  # loaded once, as the models above

        def plain() -> float:
            start = time.perf_counter()
            for c in configs:
                models[c].predict(images, batch=c.batch)
            return time.perf_counter() - start

        def audit() -> float:
            start = time.perf_counter()
            result = audit_mod.audit_runners(runners[0], runners[1:], images, gallery_size=0)
            assert result.verdict == "pass"
            return time.perf_counter() - start

        plain()  # warm-up
        audit()
        plains, audits = [], []
        for k in range(args.repeats):
            if k % 2:
                audits.append(audit())
                plains.append(plain())
            else:
                plains.append(plain())
                audits.append(audit())
    ratio = statistics.median(a / p for a, p in zip(audits, plains))
    lines = [MARK_BEGIN, "## audit cost: one audit of K configurations vs K plain predict runs", "",
             f"- command: `.venv/bin/python bench/audit_cost.py --images {args.images} --repeats {args.repeats}`",
             f"- when: {datetime.date.today().isoformat()}; machine: {platform.machine()}, {os.cpu_count()} cores; "
             f"YOLOv5n, {len(images)} coco-val-mini images; K = 4: torch batch 1 (reference) and 16, ONNX Runtime batch 1 and 16",
             "", "| measure | seconds (per repeat) | median |", "| --- | --- | ---: |",
             f"| sum of 4 plain `predict` runs | {', '.join(f'{v:.1f}' for v in plains)} | {statistics.median(plains):.1f} |",
             f"| one `audit` of the 4 configurations | {', '.join(f'{v:.1f}' for v in audits)} | {statistics.median(audits):.1f} |",
             f"| **ratio audit / plain** (median of per-repeat ratios) | | **{ratio:.2f}** (goal <= 1.2) |", MARK_END]
    section = "\n".join(lines)
    publish(section, ROOT, MARK_BEGIN, MARK_END, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())

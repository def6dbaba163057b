"""Validation throughput and accuracy: yoloparity (1 process, --workers 2; torch and ONNX Runtime)
side by side with the reference ``yolov5 val`` (PyPI yolov5==7.0.14, run from its own environment
bench/.venv-ref made by bench/setup_reference.sh), plus COCO evaluation time, faster-coco-eval vs
pycocotools. Everything is run as a command line in a fresh process and timed wall-clock, start
to finish (model load and evaluation included), on the 206 images of coco-val-mini.

    .venv/bin/python bench/val_throughput.py            # prints and updates BENCHMARKS.md
    .venv/bin/python bench/val_throughput.py --no-write --skip-reference
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
ASSETS = Path(os.environ.get("YOLOPARITY_ASSETS", ROOT.parent / "shared" / "assets")).resolve()
from benchmarks_md import publish  # noqa: E402

REF_PY = ROOT / "bench" / ".venv-ref" / "bin" / "python"
MARK_BEGIN, MARK_END = "<!-- bench:val_throughput:begin -->", "<!-- bench:val_throughput:end -->"


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=3600)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return wall, proc


def ours(model: str, data: str, tmp: str, name: str, *extra: str) -> dict:
    out = os.path.join(tmp, f"{name}.json")
    wall, _ = timed([sys.executable, "-m", "yoloparity", "val", model, data, "--quiet", "--json", out,
                     "--run-dir", os.path.join(tmp, name), *extra])
    m = json.loads(Path(out).read_text())
    return {"wall": wall, "mAP50_95": m["mAP50_95"], "mAP50": m["mAP50"], "detections": m["detections"]}


def reference(model: str, data: str, tmp: str, batch: int) -> dict:
    """``yolov5 val`` from its own environment; its saved predictions scored against the COCO json."""
    from yoloparity.data.coco_classes import COCO80_TO_91
    from yoloparity.data.datasets import load_dataset
    from yoloparity.evaluate.coco import coco_evaluate

    project = os.path.join(tmp, "ref")
    import yaml

    cfg = yaml.safe_load(Path(data).read_text())  # the reference resolves a relative 'path' against its own package
    cfg["path"] = str(Path(data).parent.resolve())
    ref_data = os.path.join(tmp, "ref-data.yaml")
    Path(ref_data).write_text(yaml.safe_dump(cfg))
    config_dir = os.path.join(tmp, "ref-config")  # it downloads Arial.ttf unless one is there: give it matplotlib's font
    os.makedirs(config_dir, exist_ok=True)
    font = glob.glob(str(REF_PY.parents[1] / "lib" / "python*" / "site-packages" / "matplotlib" / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"))
    if font:
        import shutil

        shutil.copy(font[0], os.path.join(config_dir, "Arial.ttf"))
    script = ("import sys; from yolov5 import val; sys.argv=['val']+sys.argv[1:]; "
              "opt=val.parse_opt(); val.run(**vars(opt))")
    wall, proc = timed([str(REF_PY), "-c", script, "--weights", model, "--data", ref_data, "--img", "640",
                        "--batch-size", str(batch), "--device", "cpu", "--save-json", "--project", project,
                        "--name", f"b{batch}", "--exist-ok", "--workers", "2"],
                       env={"YOLO_OFFLINE": "1", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "YOLOV5_CONFIG_DIR": config_dir})  # yolov5 7.0 predates weights_only
    files = glob.glob(os.path.join(project, f"b{batch}", "*_predictions.json"))
    if not files:
        raise RuntimeError(f"reference wrote no predictions json:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    preds = json.loads(Path(files[0]).read_text())
    for p in preds:  # not is_coco for a custom data.yaml: it writes class indices; map them as COCO does
        p["category_id"] = COCO80_TO_91[int(p["category_id"])]
    ds = load_dataset(data)
    m = coco_evaluate(ds.gt, preds, ds.names, ds.category_ids, "pycocotools")
    return {"wall": wall, "mAP50_95": m.mAP50_95, "mAP50": m.mAP50, "detections": len(preds)}


def eval_times(model: str, data: str, tmp: str, repeats: int = 3) -> dict[str, float]:
    from yoloparity.data.datasets import load_dataset
    from yoloparity.evaluate.coco import coco_evaluate

    out = os.path.join(tmp, "preds.json")
    timed([sys.executable, "-m", "yoloparity", "val", model, data, "--quiet", "--save-json", out, "--run-dir",
           os.path.join(tmp, "evalrun")])
    results = json.loads(Path(out).read_text())
    ds = load_dataset(data)
    times = {}
    for evaluator in ("faster-coco-eval", "pycocotools"):
        runs = []
        for _ in range(repeats):
            t = time.perf_counter()
            coco_evaluate(ds.gt, results, ds.names, ds.category_ids, evaluator)
            runs.append(time.perf_counter() - t)
        times[evaluator] = statistics.median(runs)
    times["detections"] = len(results)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--skip-reference", action="store_true", help="leave out yolov5 val even if bench/.venv-ref exists")
    args = parser.parse_args()
    model = str(ASSETS / "models" / "yolov5n.pt")
    data = str(ASSETS / "coco-val-mini" / "data.yaml")
    n = 206
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        import yoloparity

        onnx_path = yoloparity.export(model, os.path.join(tmp, "yolov5n.onnx"), dynamic=True)
        runs = [
            ("yoloparity val, torch CPU, 1 process", lambda: ours(model, data, tmp, "t1")),
            ("yoloparity val, torch CPU, --workers 2", lambda: ours(model, data, tmp, "t2", "--workers", "2")),
            ("yoloparity val, ONNX Runtime CPU, 1 process", lambda: ours(onnx_path, data, tmp, "o1", "--backend", "onnxruntime")),
            ("yoloparity val, ONNX Runtime CPU, --workers 2",
             lambda: ours(onnx_path, data, tmp, "o2", "--backend", "onnxruntime", "--workers", "2")),
        ]
        have_ref = REF_PY.exists() and not args.skip_reference
        if have_ref:
            runs += [("reference yolov5 val, PyTorch CPU, batch 32", lambda: reference(model, data, tmp, 32)),
                     ("reference yolov5 val, PyTorch CPU, batch 1", lambda: reference(model, data, tmp, 1))]
        for label, fn in runs:
            r = fn()
            rows.append((label, r))
            print(f"{label}: {r['wall']:.1f} s, {n / r['wall']:.1f} images/s, mAP50-95 {r['mAP50_95']:.4f}", flush=True)
        ev = eval_times(model, data, tmp)
    base = rows[0][1]["wall"]
    ref_rows = [r for label, r in rows if label.startswith("reference")]
    lines = [MARK_BEGIN, "## val: throughput and mAP, yoloparity vs the reference `yolov5 val`", "",
             "- command: `.venv/bin/python bench/val_throughput.py` (reference side: `bash bench/setup_reference.sh` first)",
             f"- when: {datetime.date.today().isoformat()}; machine: {platform.machine()}, {os.cpu_count()} cores, no GPU; "
             "model: official YOLOv5n; data: coco-val-mini (206 images), 640, conf 0.001, IoU 0.6, multi-label, "
             "scored with COCOeval against annotations/instances.json",
             "- each row is one command in a fresh process, timed wall-clock from start to exit (model load, all images, COCO evaluation)",
             "", "| run | wall s | images/s | vs yoloparity 1 process | mAP50-95 | mAP50 | detections |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label, r in rows:
        lines.append(f"| {label} | {r['wall']:.1f} | {n / r['wall']:.1f} | {base / r['wall']:.2f}x | {r['mAP50_95']:.4f} | "
                     f"{r['mAP50']:.4f} | {r['detections']} |")
    if ref_rows:
        best_ours = min(r["wall"] for label, r in rows if label.startswith("yoloparity"))
        ref_b1 = [r for label, r in rows if label.endswith("batch 1")][0]
        lines += ["", f"Speed-up at equal mAP (the reference's batch-1 run is the one whose mAP ours equals): "
                  f"{ref_b1['wall'] / best_ours:.2f}x (fastest yoloparity row vs reference batch 1); "
                  f"vs the reference's batch-32 run (whose mAP differs): "
                  f"{[r for label, r in rows if label.endswith('batch 32')][0]['wall'] / best_ours:.2f}x."]
    else:
        lines += ["", "The reference rows are missing: bench/.venv-ref was not set up for this run."]
    lines += ["", f"COCO evaluation of the same {ev['detections']} detections (median of 3): faster-coco-eval "
              f"{ev['faster-coco-eval']:.2f} s, pycocotools {ev['pycocotools']:.2f} s "
              f"({ev['pycocotools'] / ev['faster-coco-eval']:.1f}x).", MARK_END]
    section = "\n".join(lines)
    publish(section, ROOT, MARK_BEGIN, MARK_END, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""val of the trained checkpoints, yoloparity and Ultralytics' own validator side by side, per head and batch size.

The reference runs from its own environment (bench/.venv-ultralytics, made by bench/setup_reference_ultralytics.sh,
or the Python in $YOLOPARITY_ULTRALYTICS_PYTHON) through bench/reference_ultralytics.py; both sides' predictions are
scored by the same pycocotools call against coco-val-mini's annotations/instances.json. Each of our rows is one
command in a fresh process, timed wall-clock; the reference's time is its val call.

    .venv/bin/python bench/trained_parity.py            # prints and updates BENCHMARKS.md
    .venv/bin/python bench/trained_parity.py --batches 1 --no-write
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
from benchmarks_md import assets_dir, publish  # noqa: E402

ASSETS = assets_dir(ROOT).resolve()
MARK_BEGIN, MARK_END = "<!-- bench:trained_parity:begin -->", "<!-- bench:trained_parity:end -->"
CONFIGS = [("yolov8n", None), ("yolo26n", "one2one"), ("yolo26n", "one2many"), ("yolov10n", "one2one"),
           ("yolov10n", "one2many")]


def reference_python() -> Path | None:
    for candidate in (os.environ.get("YOLOPARITY_ULTRALYTICS_PYTHON"), ROOT / "bench" / ".venv-ultralytics" / "bin" / "python"):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    return None


def _run(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def _score(results: list[dict]) -> tuple[float, float, int]:
    from yoloparity.data.datasets import load_dataset
    from yoloparity.evaluate.coco import coco_evaluate

    ds = load_dataset(str(ASSETS / "coco-val-mini" / "data.yaml"))
    m = coco_evaluate(ds.gt, results, ds.names, ds.category_ids, "pycocotools")
    return m.mAP50_95, m.mAP50, len(results)


def ours(model: str, head: str | None, batch: int, tmp: str, workers: int = 1) -> dict:
    out = os.path.join(tmp, f"ours-{Path(model).stem}-{head}-{batch}-{workers}.json")
    cmd = [sys.executable, "-m", "yoloparity", "val", model, str(ASSETS / "coco-val-mini" / "data.yaml"), "--batch",
           str(batch), "--evaluator", "pycocotools", "--save-json", out, "--quiet", "--workers", str(workers)]
    cmd += ["--head", head] if head else []
    if workers > 1:
        cmd += ["--run-dir", os.path.join(tmp, f"run-{Path(model).stem}-{head}-{batch}")]
    wall = _run(cmd)
    m50_95, m50, n = _score(json.loads(Path(out).read_text()))
    return {"wall": wall, "mAP50_95": m50_95, "mAP50": m50, "detections": n}


def reference(python: Path, model: str, head: str | None, batch: int, tmp: str) -> dict:
    from yoloparity.data.coco_classes import COCO80_TO_91

    out = os.path.join(tmp, f"ref-{Path(model).stem}-{head}-{batch}.json")
    _run([str(python), str(ROOT / "bench" / "reference_ultralytics.py"), model, str(ASSETS / "coco-val-mini" / "data.yaml"),
          "--head", head or "default", "--batch", str(batch), "--out", out])
    data = json.loads(Path(out).read_text())
    preds = [{**p, "category_id": COCO80_TO_91[p.pop("class_index")]} for p in data["predictions"]]
    m50_95, m50, n = _score(preds)
    return {"wall": data["wall_s"], "mAP50_95": m50_95, "mAP50": m50, "detections": n, "version": data["ultralytics"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="1,16", help="batch sizes to run (default: 1,16)")
    ap.add_argument("--workers", type=int, default=2, help="also run ours over this many processes at the last batch "
                    "size (default: 2; 1 leaves it out)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    from yoloparity.environment import fingerprint

    batches = [int(b) for b in args.batches.split(",")]
    python = reference_python()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch, head in CONFIGS:
            model = str(ASSETS / "models" / f"{arch}-from-int8.pt")
            for batch in batches:
                row = {"arch": arch, "head": head, "batch": batch, "ours": ours(model, head, batch, tmp),
                       "ref": reference(python, model, head, batch, tmp) if python else None}
                if batch == batches[-1] and args.workers > 1:
                    row["ours_workers"] = ours(model, head, batch, tmp, workers=args.workers)
                rows.append(row)
                ref = row["ref"]
                print(f"{arch} {head or '-'} batch {batch}: ours {row['ours']['mAP50_95']:.4f}/{row['ours']['mAP50']:.4f}"
                      + (f", reference {ref['mAP50_95']:.4f}/{ref['mAP50']:.4f}" if ref else ""), flush=True)
    env = fingerprint()
    version = next((r["ref"]["version"] for r in rows if r["ref"]), "not run")
    lines = [MARK_BEGIN, "## Trained checkpoints: val per head, yoloparity and Ultralytics' validator side by side", "",
             "- command: `.venv/bin/python bench/trained_parity.py` (reference side: `bash bench/setup_reference_ultralytics.sh` "
             "first)",
             f"- when: {datetime.date.today().isoformat()}; CPU: {env['cpu']} (int8 dot product: {env['cpu.int8_dot_product']}), "
             f"{os.cpu_count()} cores, no GPU; reference: Ultralytics {version} (CPU fp32) via bench/reference_ultralytics.py",
             "- data: coco-val-mini (206 images), 640 rect, conf 0.001, IoU 0.7, max_det 300; both sides' predictions "
             "scored by pycocotools against annotations/instances.json",
             "- time: yoloparity's is the whole command in a fresh process (interpreter start, model load, 206 images, "
             "evaluation); the reference's is its `YOLO(...).val()` call (model load included, interpreter start and "
             "imports not)",
             "- heads: `one2one` = the end-to-end top-k (reference: `nms=False`; yoloparity's default); `one2many` = the "
             "one-to-many head + NMS (reference 8.4.190's default for these files); YOLOv10n's one-to-many branch is "
             "a copy of its one-to-one head (assets README), so its two rows differ only by top-k vs NMS",
             "", "| checkpoint | head | batch | yoloparity mAP50-95 / mAP50 | reference mAP50-95 / mAP50 | Δ mAP50-95 | "
             "yoloparity s | reference s |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        o, ref = r["ours"], r["ref"]
        ref_cells = ([f"{ref['mAP50_95']:.4f} / {ref['mAP50']:.4f}", f"{o['mAP50_95'] - ref['mAP50_95']:+.5f}",
                      f"{ref['wall']:.1f}"] if ref else ["not run", "-", "-"])
        lines.append(f"| {r['arch']}-from-int8 | {r['head'] or '-'} | {r['batch']} | {o['mAP50_95']:.4f} / {o['mAP50']:.4f} | "
                     f"{ref_cells[0]} | {ref_cells[1]} | {o['wall']:.1f} | {ref_cells[2]} |")
        if "ours_workers" in r:
            w = r["ours_workers"]
            lines.append(f"| {r['arch']}-from-int8 | {r['head'] or '-'} | {r['batch']}, --workers {args.workers} | "
                         f"{w['mAP50_95']:.4f} / {w['mAP50']:.4f} | | | {w['wall']:.1f} | |")
    lines += ["", "yoloparity gives one figure per head whatever the batch size (each image its own rect shape, the "
              "reference's batch-1 rule); the reference's own figure moves with its batch size (its rect batch shapes "
              "depend on which images share a batch).", MARK_END]
    publish("\n".join(lines), ROOT, MARK_BEGIN, MARK_END, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())

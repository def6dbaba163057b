"""val of the models users trained themselves (assets/user), against the figures their own trainers' val prints.

The reference figures are `assets/user/reference-val-user.json` (Ultralytics 8.4.190 `YOLO(f).val(...)`, yolov5 7.0.14
`val.run(...)`, recorded where the files were trained); this script runs `yoloparity val` in a fresh process per
file, head and batch size, with defaults (the training size and the headline metric are the file's and the data's),
and reads the JSON it writes. No reference tool is installed or run here.

    .venv/bin/python bench/user_models.py            # prints and updates BENCHMARKS.md
    .venv/bin/python bench/user_models.py --no-write
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
from benchmarks_md import assets_dir, publish  # noqa: E402

USER = assets_dir(ROOT).resolve() / "user"
MARK_BEGIN, MARK_END = "<!-- bench:user_models:begin -->", "<!-- bench:user_models:end -->"
# (file, our --head, whether the reference call had nms=False)
CASES = [("v8n-ds3-best.pt", None, False), ("v8n-ds3-last.pt", None, False),
         ("yolo26n-ds3-best.pt", "one2many", False), ("yolo26n-ds3-best.pt", "one2one", True),
         ("v5n-ds3-best.pt", None, False)]


def reference(entries: list[dict], model: str, nms_false: bool, batch: int) -> dict:
    """The reference entry for a file, head and batch size at imgsz 320."""
    return next(e for e in entries if e["file"] == f"models/{model}" and e["batch"] == batch and e["imgsz"] == 320
                and ("nms=False" in e["call"]) == nms_false)


def ours(model: str, head: str | None, batch: int) -> tuple[dict, float]:
    """One `yoloparity val` in its own process: its JSON report and wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "val.json"
        cmd = [str(ROOT / ".venv" / "bin" / "yoloparity"), "val", str(USER / "models" / model), str(USER / "ds3" / "data.yaml"),
               "--batch", str(batch), "--json", str(out), "--quiet"] + (["--head", head] if head else [])
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        return json.loads(out.read_text()), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    entries = json.loads((USER / "reference-val-user.json").read_text())["entries"]
    from yoloparity.environment import cpu_summary

    rows, worst = [], 0.0
    for model, head, nms_false in CASES:
        ref1, ref16 = reference(entries, model, nms_false, 1), reference(entries, model, nms_false, 16)
        figures = []
        for batch in (1, 16):
            report, wall = ours(model, head, batch)
            h = report["headline"]
            worst = max(worst, abs(h["mAP50_95"] - ref1["mAP50_95"]), abs(h["mAP50"] - ref1["mAP50"]))
            figures.append(f"{h['mAP50_95']:.6f} / {h['mAP50']:.6f}")
        coco = report  # batch 16's report: the COCO figures of the same predictions
        rows.append(f"| {model} | {head or '-'} | {report['metric']} | {figures[0]} | {figures[1]} | "
                    f"{ref1['mAP50_95']:.6f} / {ref1['mAP50']:.6f} | {ref16['mAP50_95']:.6f} / {ref16['mAP50']:.6f} | "
                    f"{coco['mAP50_95']:.4f} / {coco['mAP50']:.4f} | {wall:.1f} |")
    section = "\n".join([
        MARK_BEGIN,
        "## Your own model: val against the figure the trainer's own val prints",
        "",
        f"`python bench/user_models.py` ({datetime.date.today()}, {cpu_summary()}). `yoloparity val FILE ds3/data.yaml` "
        "with defaults (imgsz 320 from the file, the headline metric of the file's trainer since ds3 has no COCO json), "
        "one process per row; the reference is `assets/user/reference-val-user.json` (Ultralytics 8.4.190 / yolov5 "
        "7.0.14 on the machine that trained the files). mAP50-95 / mAP50.",
        "",
        "| file | our --head | headline metric | ours, batch 1 | ours, batch 16 | reference, batch 1 | reference, batch 16 "
        "| COCO protocol, same predictions | wall s (batch 16) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"Largest difference from the reference's batch-1 figure: {worst:.1e}. Ours is one figure at any batch size; the "
        "reference's moves with its batch size (its rect batches pad images to their batch's shape).",
        MARK_END,
    ])
    publish(section, ROOT, MARK_BEGIN, MARK_END, write=not args.no_write)


if __name__ == "__main__":
    main()

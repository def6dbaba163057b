"""The `yoloparity bench` table for BENCHMARKS.md, run twice to show repeat agreement.

    .venv/bin/python bench/backends_table.py [--repeats 5] [--runs 2] [--no-write]

Equivalent to `yoloparity bench yolov5n.pt --data coco-val-mini/data.yaml --backends
torch,onnxruntime,openvino,litert --precisions fp32,fp16,int8 --batch 1,8`, plus the
third-party int8 TFLite files on the LiteRT backend.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from benchmarks_md import assets_dir, publish  # noqa: E402

MARK_BEGIN, MARK_END = "<!-- bench:backends_table:begin -->", "<!-- bench:backends_table:end -->"


def agrees(a: dict, b: dict) -> bool:
    """Two runs agree when their medians are within the sum of the spreads they report."""
    x, y = a["images_per_s"], b["images_per_s"]
    return abs(x["median"] - y["median"]) <= x["spread"] + y["spread"]


def _row(r: dict, again: dict | None) -> str:
    if r["status"] != "ok":
        return f"| {r['backend']} | {r['precision']} | {r['batch']} | {r['status']}: {r['reason']} |" + " |" * 10
    st, ips = r["stages_ms"], r["images_per_s"]
    rerun = "-"
    if again and again["status"] == "ok":
        rerun = (f"{again['images_per_s']['median']:.1f} ± {again['images_per_s']['spread']:.1f} "
                 + ("(agrees)" if agrees(r, again) else "(**differs**)"))
    return (f"| {r['backend']} | {r['precision']} | {r['batch']} | {ips['median']:.1f} ± {ips['spread']:.1f} | {rerun} | "
            f"{r['ms_per_image']['median']:.1f} | {st['decode']:.1f} / {st['letterbox']:.1f} / {st['inference']:.1f} / "
            f"{st['nms']:.1f} | {r['peak_rss_mb']:.0f} | {r['file_size_mb']:.1f} | "
            + (f"{r['map50_95']:.4f}" if r.get("map50_95") is not None else "-") + " | "
            + (f"{100 * r['peak_share']:.1f} %" if r.get("peak_share") is not None else "-") + " | "
            + (f"{r['probe_gflops_per_s']:.0f}" if r.get("probe_gflops_per_s") else "-") + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    assets = assets_dir(ROOT)
    data = str(assets / "coco-val-mini" / "data.yaml")

    from yoloparity.benchmarking.measure import BenchOptions, run_bench

    def bench(model: str, backends, precisions):
        opts = BenchOptions(backends=backends, precisions=precisions, batches=(1, 8), repeats=args.repeats, data=data)
        return run_bench(model, opts, log=lambda line: print(line, file=sys.stderr)).to_dict()

    reports = [bench(str(assets / "models" / "yolov5n.pt"), ("torch", "onnxruntime", "openvino", "litert"),
                     ("fp32", "fp16", "int8")) for _ in range(args.runs)]
    tflite = [bench(str(assets / "models" / name), ("litert",), ("int8",))
              for name in ("yolov5n-int8.tflite", "yolov8n_int8.tflite", "yolov8n_full_integer_quant.tflite")]
    first = reports[0]
    lines = [MARK_BEGIN, "## bench: backends x precisions x batch sizes on this CPU", "",
             f"- command: `.venv/bin/python bench/backends_table.py --repeats {args.repeats} --runs {args.runs}` — the "
             f"same as `yoloparity bench yolov5n.pt --data coco-val-mini/data.yaml --backends torch,onnxruntime,openvino,litert "
             f"--precisions fp32,fp16,int8 --batch 1,8 --repeats {args.repeats}`, run {args.runs} times",
             f"- when: {datetime.date.today().isoformat()}; machine: {first['machine']['cpu']} ({platform.machine()}, "
             f"{os.cpu_count()} cores), 2 threads per configuration, no GPU in this task",
             f"- YOLOv5n {first['gflops']:.2f} GFLOPs/image at 640 (counted from the graph); 16 images per timed repeat; "
             "mAP50-95 on all 206 coco-val-mini images with validation settings (static-shape files: square 640)",
             "- img/s: median ± half the min-max spread over the repeats; 'rerun' is the second, independent run",
             "- % peak: GFLOPs x img/s over the GFLOP/s of a 1024x1024 matrix-multiply probe on the same backend and "
             "precision, measured in the same run",
             "", "| backend | precision | batch | img/s | rerun img/s | ms/img | ms decode / letterbox / infer / nms | "
                 "peak RSS MB | file MB | mAP50-95 | % peak | probe GFLOP/s |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    again = {(r["backend"], r["precision"], r["batch"]): r for r in reports[-1]["results"]} if len(reports) > 1 else {}
    for r in first["results"]:
        lines.append(_row(r, again.get((r["backend"], r["precision"], r["batch"]))))
    pairs = [(r, again[(r["backend"], r["precision"], r["batch"])]) for r in first["results"]
             if r["status"] == "ok" and again.get((r["backend"], r["precision"], r["batch"]), {}).get("status") == "ok"]
    if pairs:
        ok = sum(agrees(a, b) for a, b in pairs)
        worst = max(abs(a["images_per_s"]["median"] - b["images_per_s"]["median"]) / a["images_per_s"]["median"] for a, b in pairs)
        lines += ["", f"Repeat agreement: {ok} of {len(pairs)} configurations agree between the two runs within the sum of "
                      f"their reported spreads; the largest difference of medians is {100 * worst:.0f} %. This VM's speed "
                      "drifts by up to ±20 % over minutes (see the predict section), which the within-run spread cannot "
                      "see; " + ("mAP50-95 is identical between the runs for every configuration."
                                 if all(a["map50_95"] == b["map50_95"] for a, b in pairs)
                                 else "mAP50-95 differs between the runs for: " + ", ".join(
                                     f"{a['backend']} {a['precision']} b{a['batch']}" for a, b in pairs
                                     if a["map50_95"] != b["map50_95"]))]
    (ROOT / "bench" / "last_backends_table.json").write_text(json.dumps(reports + tflite, indent=1))
    lines += ["", "Third-party TFLite files on the LiteRT backend (same settings; no probe: no TFLite builder here):", "",
              "| file | batch | img/s | ms/img | ms decode / letterbox / infer / nms | peak RSS MB | file MB | mAP50-95 |",
              "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    for report in tflite:
        for r in report["results"]:
            if r["status"] == "ok":
                st = r["stages_ms"]
                lines.append(f"| {os.path.basename(report['model'])} | {r['batch']} | {r['images_per_s']['median']:.1f} ± "
                             f"{r['images_per_s']['spread']:.1f} | {r['ms_per_image']['median']:.1f} | {st['decode']:.1f} / "
                             f"{st['letterbox']:.1f} / {st['inference']:.1f} / {st['nms']:.1f} | {r['peak_rss_mb']:.0f} | "
                             f"{r['file_size_mb']:.1f} | {r['map50_95']:.4f} |")
    lines.append(MARK_END)
    publish("\n".join(lines), ROOT, MARK_BEGIN, MARK_END, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""predict at scale: images/s over 1 and 2 processes (torch.distributed) and 2 Ray actors, and the merge's cost.

Each configuration is one ``yoloparity predict`` command in a fresh process, timed wall-clock from
start to exit (model load, process start-up, all inputs, merge), over the 206 coco-val-mini images
listed ``--copies`` times (a list file); the one-process run is the baseline measured in the same
run, and every other run's JSON Lines must equal its bytes. The merge is also timed on its own on
a synthetic run of ``--merge-rows`` rows (the real rows repeated) cut into 8 shards: as a byte copy
(JSON Lines) and as the JSON array (every row parsed). Last, a paper estimate for 1 million images
on 8 GPUs from the per-image CPU costs measured here.

    .venv/bin/python bench/predict_scale.py                 # prints and updates BENCHMARKS.md
    .venv/bin/python bench/predict_scale.py --copies 1 --no-write
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

MARK_BEGIN = "<!-- bench:predict_scale:begin -->"
MARK_END = "<!-- bench:predict_scale:end -->"


def cpu_line() -> str:
    from yoloparity.environment import cpu_summary

    return f"{cpu_summary()}, {os.cpu_count()} cores"


def run(cmd: list[str]) -> tuple[float, dict]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return wall, json.loads(proc.stdout)


def merge_cost(jsonl: Path, rows: int, tmp: Path) -> dict:
    from yoloparity.io.jsonl import MergedOutputs, read_chunks

    lines = jsonl.read_bytes().splitlines(keepends=True)
    shards = []
    per = rows // 8
    for k in range(8):
        path = tmp / f"shard{k}.jsonl"
        with open(path, "wb") as fh:
            for i in range(per):
                fh.write(lines[(k * per + i) % len(lines)])
        shards.append(path)
    size = sum(p.stat().st_size for p in shards)
    out = {"rows": per * 8, "mb": size / 1e6}
    for kind in ("jsonl", "json"):
        target = tmp / f"merged.{kind}"
        t0 = time.perf_counter()
        merged = MergedOutputs(str(target) if kind == "jsonl" else None, str(target) if kind == "json" else None)
        for path in shards:
            merged.add(read_chunks(str(path)))
        merged.close()
        out[kind] = time.perf_counter() - t0
        target.unlink()
    return out


def cpu_cost_ms(images: list[str]) -> float:
    """Decode + letterbox + input conversion of one image on one core, alone (ms, median over the images)."""
    import statistics

    from yoloparity.data.sources import read_image
    from yoloparity.pipeline.letterbox import letterbox, to_input

    times = []
    for path in images:
        t0 = time.perf_counter()
        padded, _ = letterbox(read_image(path), (640, 640), "rect", 32, 114)
        to_input(padded)
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def peak_rss_mb(model: str, images: list[str], n: int, tmp: Path) -> float:
    """Peak resident memory of a predict run over ``n`` inputs (the images listed over and over), ONNX Runtime at 64 px."""

    source = tmp / f"rss{n}.txt"
    source.write_text("\n".join(images[k % len(images)] for k in range(n)) + "\n")
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024); sys.exit(r.returncode)")
    proc = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "yoloparity", "predict", model, str(source),
                           "--backend", "onnxruntime", "--imgsz", "64", "--batch", "32", "--quiet",
                           "--save-jsonl", str(tmp / f"rss{n}.jsonl")], capture_output=True, text=True, check=True)
    return float(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=3, help="how many times the 206 images are listed (default: 3)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--backend", default="onnxruntime", help="backend of every run (default: onnxruntime)")
    parser.add_argument("--merge-rows", type=int, default=200_000)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update BENCHMARKS.md")
    args = parser.parse_args()

    assets = assets_dir(ROOT)
    model = str(assets / "models" / "yolov5n.pt")
    images = sorted(str(p) for p in (assets / "coco-val-mini" / "images").glob("*.jpg"))
    base = [sys.executable, "-m", "yoloparity", "predict", model]
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        source = tmp / "inputs.txt"
        source.write_text("\n".join(images * args.copies) + "\n")
        subprocess.run(base + [images[0], "--backend", args.backend, "--quiet", "--json"], capture_output=True)  # export cache
        configs = [("1 process", []), ("2 processes (torch.distributed, gloo)", ["--workers", "2"])]
        if not args.no_ray:
            configs.append(("2 Ray actors (local cluster)", ["--engine", "ray", "--workers", "2"]))
            configs.append(("3 Ray actors, batch 5 (local cluster)", ["--engine", "ray", "--workers", "3", "--batch", "5"]))
        rows, reference = [], None
        for label, extra in configs:
            out = tmp / f"{len(rows)}.jsonl"
            run_dir = [] if "ray" in extra else ["--run-dir", str(tmp / f"run{len(rows)}")]
            wall, summary = run(base + [str(source), "--backend", args.backend, "--batch", str(args.batch), "--quiet",
                                        "--json", "--save-jsonl", str(out)] + run_dir + extra)
            data = out.read_bytes()
            reference = reference or data
            rows.append((label, wall, summary, data == reference))
        merge = merge_cost(tmp / "0.jsonl", args.merge_rows, tmp)
        rss = {k: peak_rss_mb(model, images, k, tmp) for k in (1000, 10000)}
    n = rows[0][2]["images"]
    base_rate = n / rows[0][1]
    ms = rows[0][2]["ms_per_image"]
    cpu_ms = cpu_cost_ms(images) + ms["nms"]
    merge_per_row_ms = 1000 * merge["jsonl"] / merge["rows"]
    json_per_row_ms = 1000 * merge["json"] / merge["rows"]
    lines = [
        MARK_BEGIN,
        "## predict at scale: processes, Ray actors, and the merge",
        "",
        f"- command: `.venv/bin/python bench/predict_scale.py --copies {args.copies} --batch {args.batch} "
        f"--backend {args.backend} --merge-rows {args.merge_rows}`",
        f"- when: {datetime.date.today().isoformat()}; CPU: {cpu_line()}; no GPU",
        f"- data: the 206 coco-val-mini images listed {args.copies}x ({n} inputs), YOLOv5n on {args.backend} fp32, rect "
        f"640, --batch {args.batch}; each row is one command in a fresh process, wall-clock from start to exit",
        "",
        "| configuration | wall s | images/s (wall) | x one process | images/s (summary) | merge | rows = one process |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for label, wall, summary, same in rows:
        merge_cell = "streamed" if summary["merge_s"] is None else f"{1000 * summary['merge_s']:.1f} ms"
        lines.append(f"| {label} | {wall:.1f} | {n / wall:.1f} | {n / wall / base_rate:.2f} | "
                     f"{summary['images_per_s']:.1f} | {merge_cell} | {'yes, byte for byte' if same else 'NO'} |")
    lines += [
        "",
        f"Merge on its own ({merge['rows']:,} rows in 8 shards, {merge['mb']:.0f} MB): JSON Lines (byte copy) "
        f"{merge['jsonl']:.2f} s ({merge_per_row_ms * 1000:.2f} µs/row); the --save-json array (every row parsed and "
        f"re-indented) {merge['json']:.2f} s ({json_per_row_ms * 1000:.1f} µs/row).",
        "",
        f"Peak RSS (`--backend onnxruntime --imgsz 64 --batch 32 --save-jsonl`, fresh process): 1,000 inputs "
        f"{rss[1000]:.0f} MB, 10,000 inputs {rss[10000]:.0f} MB (x{rss[10000] / rss[1000]:.3f}; the test's bound is 1.2).",
        "",
        "What limits scaling here: 2 cores. One process already uses both (2 intra-op threads, decoding in 2 "
        "low-priority threads); two processes get one core each, so the gain can only come from overlapping one "
        "process's decoding with the other's inference, and each extra process pays its own start-up (interpreter, "
        "torch import, model load, a gloo rendezvous; Ray adds its cluster start and actor scheduling). The figures "
        "show that cost, not a speed-up; with one core or GPU per worker the shards are independent (no "
        "communication until the merge) and throughput adds up per worker.",
        "",
        "images/s (summary) is the run's own count over rank 0's time from model load to merged output (no interpreter "
        "start-up); merge is rank 0's time to stream every shard into the output (the other rank's over gloo).",
        "",
        "Paper estimate, 1 million images on 8 GPUs (one node, `--workers 8 --device cuda`), from the figures measured "
        f"here: CPU work per image outside inference is decode + letterbox (alone on one core, median over the 206 "
        f"images) + NMS = {cpu_ms:.1f} ms on this machine. With 4 cores feeding each GPU, one rank sustains at most 4 / {cpu_ms / 1000:.4f} s = "
        f"{4000 / cpu_ms:.0f} images/s before the GPU matters, so 8 ranks ~{8 * 4000 / cpu_ms:.0f} images/s, and 1M "
        f"images take ~{1e6 / (8 * 4000 / cpu_ms) / 60:.1f} min (GPU inference of YOLOv5n at batch 32 is not measured "
        f"here; it only matters if a GPU does fewer than {4000 / cpu_ms:.0f} images/s). The merge of 1M rows adds "
        f"~{merge_per_row_ms * 1e6 / 1000:.1f} s as JSON Lines (a byte copy; over gloo, at the rate measured above) (~{json_per_row_ms * 1e6 / 1000:.0f} s for the JSON array), "
        "streamed through rank 0 over gloo in 1 MiB pieces; peak memory does not grow with the image count "
        "beyond the source list itself (about 150 bytes per listed path).",
        MARK_END,
    ]
    publish("\n".join(lines), ROOT, MARK_BEGIN, MARK_END, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())

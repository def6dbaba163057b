"""Our predict against Ultralytics' own predict, whole process, on PyTorch, ONNX Runtime and OpenVINO.

Both sides run the same files: the trained checkpoint on PyTorch, and Ultralytics' own exports of it
(``format=onnx`` on ONNX Runtime, ``format=openvino`` on OpenVINO; static 640, made once by
bench/reference_ultralytics_predict.py in the reference environment, bench/.venv-ultralytics). Each run is a fresh
process over the 206 coco-val-mini images with each side's defaults (conf 0.25), timed from outside: wall seconds,
CPU seconds (user + system of the process and its threads, from ``wait4``: the work a busy or billed machine pays)
and peak resident memory; runs interleave ours and theirs, the median of ``--repeats`` is reported.

Precision: their OpenVINO backend compiles without a precision hint, so it computes in what the CPU plugin picks
(bf16 on CPUs with AVX512-BF16 or AMX); ours pins f32. Our OpenVINO rows are run in fp32 and at their default
(``--precision runtime``) — equal precision is that row.

    .venv/bin/python bench/ultralytics_predict.py              # prints and updates BENCHMARKS.md
    .venv/bin/python bench/ultralytics_predict.py --models yolov8n --repeats 1 --no-write
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
from benchmarks_md import assets_dir, publish  # noqa: E402
from trained_parity import reference_python  # noqa: E402

ASSETS = assets_dir(ROOT).resolve()
MARK_BEGIN, MARK_END = "<!-- bench:ultralytics_predict:begin -->", "<!-- bench:ultralytics_predict:end -->"
SOURCE = ASSETS / "coco-val-mini" / "images"
# what our predict needs to run a checkpoint's default head as Ultralytics' predict does (8.4.190: one-to-many + NMS)
PT_EXTRA = {"yolo26n": ["--head", "one2many"], "yolov10n": ["--head", "one2many"]}
# (row label, our backend, our extra arguments, the file both run: "pt" | "onnx" | "openvino")
RUNTIMES = [("PyTorch fp32", "torch", [], "pt"), ("ONNX Runtime fp32", "onnxruntime", [], "onnx"),
            ("OpenVINO, ours fp32", "openvino", [], "openvino"),
            ("OpenVINO, both at its default", "openvino", ["--precision", "runtime"], "openvino")]


def run_child(cmd: list[str]) -> tuple[dict, str]:
    """(wall s, CPU s, peak MB) of one process running ``cmd`` — its own rusage, from ``wait4`` on its pid — and
    what it printed (to files: a pipe left unread would stall a child that prints much)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = code = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
        out.seek(0)
        err.seek(0)
        printed, errors = out.read(), err.read()
    if code:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed (exit {code}):\n{errors[-3000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024}, printed


def ours(model: str, backend: str, extra: list[str]) -> dict:
    """Our predict over the images, as a user runs it; its JSON summary."""
    cost, printed = run_child([sys.executable, "-m", "yoloparity", "predict", model, str(SOURCE), "--backend", backend,
                               "--json", "--quiet", *extra])
    summary = json.loads(printed)
    return {**cost, "detections": summary["detections"], "images": summary["images"],
            "ms_per_image": summary["ms_per_image"], "computes": summary["computes"]["computes"]}


def forward_alone(path: str, backend: str, extra: list[str]) -> dict:
    """:func:`measure_forward` in a process of its own: this one stays small (a child's peak memory counts the parent
    it was forked from) and its thread pools stay out of the next row's figures."""
    proc = subprocess.run([sys.executable, __file__, "--forward-alone", path, backend, *extra], capture_output=True,
                          text=True, timeout=1800)
    if proc.returncode:
        raise RuntimeError(f"the forward alone of {path} on {backend} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_forward(path: str, backend: str, extra: list[str], repeats: int = 20) -> dict:
    """Our backend's forward alone, in this process, per image: wall and CPU seconds (``process_time``) — what no
    change outside the runtime can go below. At the static exports' 640x640, and at 480x640 for a checkpoint (rect
    inputs: most coco-val-mini images letterbox to 480x640 or smaller), in batches of two images: torch and ONNX Runtime
    run them in parallel on the CPU, one single-threaded run each (OpenVINO's static files take one at a time)."""
    import numpy as np

    from yoloparity import load_model

    given = {key: extra[extra.index(flag) + 1] for flag, key in (("--precision", "precision"), ("--head", "head_branch"))
             if flag in extra}
    with load_model(path, backend=backend, **given) as model:
        batch = 1 if model.backend.constraints.batch == 1 else 2
        height = 640 if model.backend.constraints.height else 480
        x = np.random.default_rng(0).random((batch, 3, height, 640), dtype=np.float32)
        for _ in range(3):
            model.backend.run(x)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(repeats):
            model.backend.run(x)
        return {"wall": (time.perf_counter() - wall) / (repeats * batch),
                "cpu": (time.process_time() - cpu) / (repeats * batch)}


def theirs(python: Path, model: str) -> dict:
    """Ultralytics' predict over the images (bench/reference_ultralytics_predict.py)."""
    cost, printed = run_child([str(python), str(ROOT / "bench" / "reference_ultralytics_predict.py"), "predict", model,
                               str(SOURCE)])
    return {**cost, **json.loads(printed.strip().splitlines()[-1])}


def exports(python: Path, pt: str, folder: Path) -> dict[str, str]:
    """Their ONNX file and OpenVINO folder of ``pt``, made once."""
    proc = subprocess.run([str(python), str(ROOT / "bench" / "reference_ultralytics_predict.py"), "export", pt,
                           str(folder)], capture_output=True, text=True, timeout=1800)
    if proc.returncode:
        raise RuntimeError(f"their export of {pt} failed:\n{proc.stderr[-3000:]}")
    made = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {m["format"]: m["path"] for m in made}


def median_of(runs: list[dict]) -> dict:
    """The median of each measured figure over the repeats; the rest from the first run."""
    out = dict(runs[0])
    for key in ("wall", "cpu", "peak_mb"):
        out[key] = statistics.median(r[key] for r in runs)
    return out


def table(rows: list[dict], repeats: int, env: dict, version: str, default: str) -> list[str]:
    lines = [MARK_BEGIN, "## Predict beside Ultralytics' own, whole process (PyTorch, ONNX Runtime, OpenVINO)", "",
             "- command: `.venv/bin/python bench/ultralytics_predict.py` (reference side: `bash "
             "bench/setup_reference_ultralytics.sh` first)",
             f"- when: {datetime.date.today().isoformat()}; CPU: {env['cpu']} ({env['cpu.isa']}), {os.cpu_count()} cores, "
             f"no GPU; reference: Ultralytics {version}; OpenVINO's CPU default here: {default}",
             f"- each figure: the median of {repeats} fresh processes over the 206 coco-val-mini images, ours and "
             "theirs interleaved, each side's defaults (conf 0.25); the same files on both sides (the checkpoint; their "
             "`format=onnx` and `format=openvino` exports, static 640); CPU s = user + system of the process "
             "(`wait4`); peak = its maximum resident memory",
             "- forward alone: our backend's forward by itself in a process of its own (640x640; 480x640 for a checkpoint's rect "
             "inputs), times the images (wall / CPU s): what "
             "no change outside the runtime can go below; bound × = theirs / that, the most any pipeline around the "
             "same forward could reach",
             "", "| model | runtime | ours computes in | theirs | wall s ours / theirs | × | CPU s ours / theirs | × | "
             "forward alone s wall / CPU | bound × wall / CPU | peak MB ours / theirs | detections ours / theirs |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        o, t = r["ours"], r["theirs"]
        fw, fc = r["forward"]["wall"] * o["images"], r["forward"]["cpu"] * o["images"]
        lines.append(f"| {r['model']} | {r['runtime']} | {o['computes']} | {r['their_precision']} | "
                     f"{o['wall']:.1f} / {t['wall']:.1f} | {t['wall'] / o['wall']:.2f} | {o['cpu']:.1f} / {t['cpu']:.1f} | "
                     f"{t['cpu'] / o['cpu']:.2f} | {fw:.1f} / {fc:.1f} | {t['wall'] / fw:.2f} / {t['cpu'] / fc:.2f} | "
                     f"{o['peak_mb']:.0f} / {t['peak_mb']:.0f} | {o['detections']} / {t['detections']} |")
    lines += ["", "× = theirs / ours (above 1: ours is faster or lighter). The PyTorch rows run each side's default head: "
              "an end-to-end checkpoint (YOLO26n) runs its one-to-many head + NMS in Ultralytics 8.4.190's predict, so "
              "ours is given `--head one2many` there; their exports are end-to-end (one-to-one) and both run them as "
              "they are.", MARK_END]
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="yolov8n,yolo26n", help="checkpoints (NAME-from-int8.pt in the assets)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--forward-alone", nargs="+", metavar="ARG", help=argparse.SUPPRESS)  # PATH BACKEND [EXTRA...]
    args, unknown = ap.parse_known_args()
    if args.forward_alone:
        path, backend, *extra = args.forward_alone + unknown
        print(json.dumps(measure_forward(path, backend, extra)))
        return 0
    from yoloparity.environment import fingerprint, openvino_default_precision

    python = reference_python()
    if python is None:
        print("no reference environment: run bash bench/setup_reference_ultralytics.sh first", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            folder = Path(tmp) / name
            folder.mkdir()
            pt = str(folder / f"{name}-from-int8.pt")  # a copy: their exporter writes beside the checkpoint
            shutil.copyfile(ASSETS / "models" / f"{name}-from-int8.pt", pt)
            files = {"pt": pt, **exports(python, pt, folder)}
            for label, backend, extra, kind in RUNTIMES:
                extra = extra + (PT_EXTRA.get(name, []) if kind == "pt" else [])
                ours_runs, their_runs = [], []
                for _ in range(args.repeats):
                    ours_runs.append(ours(files[kind], backend, extra))
                    their_runs.append(theirs(python, files[kind]))
                o, t = median_of(ours_runs), median_of(their_runs)
                their_precision = {"openvino": t["openvino_default"]}.get(kind, "fp32")
                rows.append({"model": f"{name}-from-int8", "runtime": label, "ours": o, "theirs": t,
                             "their_precision": their_precision, "forward": forward_alone(files[kind], backend, extra)})
                print(f"{name} {label}: ours {o['wall']:.1f} s ({o['cpu']:.1f} CPU s, {o['detections']} boxes), "
                      f"theirs {t['wall']:.1f} s ({t['cpu']:.1f} CPU s, {t['detections']} boxes)", flush=True)
    env = fingerprint()
    version = rows[0]["theirs"]["ultralytics"] if rows else "not run"
    lines = table(rows, args.repeats, env, version, openvino_default_precision())
    publish("\n".join(lines), ROOT, MARK_BEGIN, MARK_END, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())

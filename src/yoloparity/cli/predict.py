"""``yoloparity predict``: detect objects in images, folders, globs and videos."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from ..api import predict_files
from ..report.console import format_class_counts, format_reference, format_stage_times
from ..settings import InferenceSettings
from ..sharding import is_rank0
from ..types import DEFAULT_CONF, DEFAULT_MAX_DET
from .common import (
    add_imgsz_option,
    add_json_option,
    add_model_args,
    emit_json,
    imgsz_values,
    load_options,
    progress_bar,
)


def add_parser(sub) -> None:
    """Register ``yoloparity predict``."""
    p = sub.add_parser(
        "predict",
        help="detect objects in images, folders, globs or videos",
        description="Batched, batch-invariant inference: every image is letterboxed on its own and batched only "
        "with images of the same input shape, so its detections do not depend on --batch.",
    )
    p.add_argument("model", help="a .pt checkpoint (YOLOv5, YOLOv8, YOLO11), an .onnx export, or an official name like yolov5n.pt")
    p.add_argument("source", nargs="+", help="image file(s), folder(s), glob(s) or video file(s)")
    add_model_args(p)
    add_imgsz_option(p, "inference size", "the model's own: the size a .pt was trained at, a static file's input, else 640")
    p.add_argument("--batch", type=int, default=16, help="images per batch (default: 16); results do not depend on it")
    p.add_argument("--conf", type=float, default=DEFAULT_CONF, help=f"score threshold (default: {DEFAULT_CONF})")
    p.add_argument("--iou", type=float, default=None, help="NMS IoU threshold (default: 0.45 for YOLOv5, 0.7 for YOLOv8/11)")
    p.add_argument("--max-det", type=int, default=DEFAULT_MAX_DET,
                   help=f"most detections kept per image (default: {DEFAULT_MAX_DET})")
    p.add_argument("--classes", type=int, nargs="+", default=None, metavar="ID", help="keep only these class ids")
    p.add_argument("--agnostic", action="store_true", help="class-agnostic NMS")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--rect", dest="mode", action="store_const", const="rect",
                      help="pad each image only to the next stride multiple (default)")
    mode.add_argument("--square", dest="mode", action="store_const", const="square", help="pad every image to imgsz x imgsz")
    p.set_defaults(mode="rect")
    p.add_argument("--decode-threads", type=int, default=2, help="image decoding threads per process (default: 2)")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable image instead of skipping it")
    out = p.add_argument_group("outputs")
    out.add_argument("--save-jsonl", metavar="FILE", help="write one JSON line per input in input order, streamed as "
                     "results arrive (flat memory at any size; the format for large runs): {file, width, height, "
                     "detections} or {file, error} for a skipped input")
    out.add_argument("--save-json", metavar="FILE", help="write the detections as one JSON array of the images that "
                     "were read, in input order (for small runs; also streamed)")
    out.add_argument("--save-dir", metavar="DIR", help="write each image with its detections drawn")
    out.add_argument("--save-record", metavar="FILE", help="write a run record (settings, fingerprint, per-image letterbox "
                     "and detections) for `yoloparity compare` (one process)")
    out.add_argument("--record-raw", type=int, default=8, metavar="K",
                     help="with --save-record: keep the raw head outputs of the first K images (default: 8)")
    add_json_option(out, "the run summary (counts, timings, skipped files)")
    scale = p.add_argument_group(
        "at scale", "The inputs (folders and globs sorted by name; a .txt file lists one path per line) are cut into "
        "contiguous shards, one per process; each process streams its rows to a shard file and the first merges them "
        "in input order. The rows do not depend on --batch, --workers or --engine. Several machines: run the same "
        "command under torchrun (torchrun --nnodes M --nproc-per-node N -m yoloparity predict …)")
    scale.add_argument("--workers", type=int, default=1, help="local processes (torch.distributed: gloo on CPU, nccl on "
                       "GPUs), or Ray actors with --engine ray (default: 1)")
    scale.add_argument("--engine", default="torch-distributed", choices=["torch-distributed", "ray"],
                       help="torch-distributed (default): processes started by torch's elastic launcher, or torchrun; "
                       "ray: Ray Data map_batches over --workers actors (pip install 'yoloparity[ray]')")
    scale.add_argument("--ray-address", metavar="ADDR", help="with --engine ray: the cluster to join (e.g. auto or "
                       "ray://host:10001; default: start a local one)")
    scale.add_argument("--run-dir", metavar="DIR", help="where shard files go, kept for --resume (default: "
                       "runs/predict/<time>-<pid> with --workers > 1; one process uses a temporary folder it removes)")
    scale.add_argument("--resume", metavar="DIR", help="run folder of an interrupted run: finished shards are reused, "
                       "an unfinished one continues after its last whole row")
    scale.add_argument("--timeout", type=float, default=600.0, help="seconds a process may go without progress before "
                       "the run is ended naming it (default: 600)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:

    """Predict, print per-class counts, stage times and the reference command, write the outputs asked for."""
    load = load_options(args)
    settings = InferenceSettings(imgsz=imgsz_values(args.imgsz), mode=args.mode, batch=args.batch, conf=args.conf,
                                 iou=args.iou, max_det=args.max_det, classes=args.classes, agnostic=args.agnostic,
                                 decode_threads=args.decode_threads, strict=args.strict)
    on_result = _Collector(args.record_raw) if args.save_record else None
    with progress_bar(0, args.quiet or not is_rank0(), "predict") as bar:

        def set_total(total: int) -> None:
            bar.total = total
            bar.refresh()

        stats = predict_files(
            args.model, args.source, settings, load, engine=args.engine, workers=args.workers,
            ray_address=args.ray_address, save_jsonl=args.save_jsonl, save_json=args.save_json, save_dir=args.save_dir,
            run_dir=args.run_dir, resume=args.resume, timeout=args.timeout, progress=bar.update, on_total=set_total,
            on_result=on_result)
    if stats is None:  # a non-zero rank under torchrun: rank 0 reports
        return 0
    for note in stats.notes:
        print(f"note: {note}", file=sys.stderr)
    if stats.inputs > 1:
        for error in stats.errors:
            print(f"warning: skipped {error}", file=sys.stderr)
    if args.save_record:
        _save_record(args.save_record, on_result, stats, load.threads)
    stats = stats.replace(record=args.save_record, save_dir=args.save_dir)
    if emit_json(args.json_out, stats):
        return 0
    print(format_stage_times(stats.to_dict()))
    print(f"{stats.detections} detections" + (":" if stats.per_class else ""))
    if stats.per_class:
        print(format_class_counts(stats.per_class))
    print(f"image size: {stats.size}")
    for line in format_reference(stats.reference or {}, "detections"):
        print(line)
    for value, label in ((stats.jsonl, "JSON Lines written to"), (stats.json, "JSON written to"),
                         (stats.save_dir, "drawn images in"), (stats.record, "run record written to"),
                         (stats.run_dir, "shards in")):
        if value:
            print(f"{label} {value}")
    return 0


class _Collector:
    """Keeps every result (without its image) for the run record, with the model and predictor that made them; the
    raw outputs of the first ``keep_raw`` images."""

    def __init__(self, keep_raw: int):
        self.keep_raw, self.results, self.model, self.predictor = keep_raw, [], None, None

    def start(self, model, predictor) -> None:
        self.model, self.predictor = model, predictor

    def __call__(self, result) -> None:
        self.results.append(dataclasses.replace(result, image=None))


def _save_record(path: str, collected: _Collector, stats, threads: int | None) -> None:
    from ..auditing.record import build_record, entries_from_results, save_record

    model, th, po = collected.model, collected.predictor.thresholds, collected.predictor.settings
    record_settings = {"conf": th.conf, "iou": th.iou,
                       "max_det": th.max_det, "classes": list(th.classes) if th.classes else None,
                       "agnostic": th.agnostic, "batch": po.batch, "imgsz": list(po.imgsz), "mode": po.mode,
                       "threads": threads}
    images, raw_outputs = entries_from_results([r for r in collected.results if r.ok])
    summary = stats.to_dict()
    times = {k: summary[k] for k in ("images", "skipped", "wall_s", "images_per_s", "ms_per_image", "errors")}
    backend = {"name": model.backend.name, "device": model.backend.device, "precision": model.backend.precision,
               "computes": model.backend.compute_precision().to_dict()}
    record, raws = build_record("predict", model.spec, model.path, backend, record_settings, images, raw_outputs, times)
    save_record(path, record, raws)

"""``yoloparity val``: COCO metrics over one or many processes."""

from __future__ import annotations

import argparse
import sys

from ..api import val
from ..evaluate.validator import ValOptions
from ..io.atomic import write_json
from ..report.console import format_val_report
from ..sharding import is_rank0
from ..types import DEFAULT_MAX_DET, DEFAULT_VAL_CONF
from .common import (
    add_imgsz_option,
    add_json_option,
    add_model_args,
    load_options,
    emit_json,
    progress_bar,
    square_imgsz,
)


def add_parser(sub) -> None:
    """Register ``yoloparity val``."""
    val = sub.add_parser(
        "val", help="mAP on a dataset (the COCO protocol and your trainer's own metric), the same at any batch size and "
                    "over any number of processes",
        description="Validates MODEL on DATA (a data.yaml, or an image folder with --annotations) with the reference "
        "validators' settings: each image gets its own rect input shape (the reference's batch-1 rule), multi-label NMS, "
        "conf 0.001, IoU 0.6 (YOLOv5) or 0.7 (YOLOv8/11), max 300 detections. --workers N shards the images over N "
        "processes (torch.distributed, gloo on CPU, nccl on GPUs); the same command runs under torchrun on a cluster. "
        "The predictions, hence the mAP, do not depend on --batch or --workers. The figures are computed three ways: the "
        "COCO protocol (faster-coco-eval or pycocotools), Ultralytics' metric (what `yolo val` prints) and YOLOv5's "
        "(what val.py prints); the summary leads with the one --metric picks (default: COCO for a COCO json, else your "
        "model's trainer's), names it and prints the reference command that gives the same number. The image size "
        "defaults to the model's own (the size a .pt was trained at).")
    val.add_argument("model", help="a .pt checkpoint, an .onnx export, or an official name")
    val.add_argument("data", nargs="?", help="data.yaml (YOLO format) or an image folder (with --annotations); or --data")
    val.add_argument("--data", dest="data_option", metavar="DATA", help="the same as DATA, as the other commands take it")
    add_model_args(val)
    val.add_argument("--annotations", metavar="JSON", help="COCO instances json to evaluate against (default: a data.yaml "
                     "of the 80 COCO classes uses its annotations/instances*.json when there is exactly one, else the labels)")
    val.add_argument("--gt-from-labels", action="store_true", help="build the ground truth from the YOLO labels even when a COCO json exists")
    val.add_argument("--split", default="val", help="which split of data.yaml (default: val)")
    add_imgsz_option(val, "inference size (square; rect batches are cut from it)", "the model's own: the size a .pt "
                     "was trained at, a static file's input, else 640; the summary says which")
    val.add_argument("--batch", type=int, default=32, help="images per batch (default: 32); results do not depend on it")
    val.add_argument("--conf", type=float, default=DEFAULT_VAL_CONF, help=f"score threshold (default: {DEFAULT_VAL_CONF})")
    val.add_argument("--iou", type=float, default=None, help="NMS IoU (default: 0.6 for YOLOv5, 0.7 for YOLOv8/11)")
    val.add_argument("--max-det", type=int, default=DEFAULT_MAX_DET,
                     help=f"most detections per image (default: {DEFAULT_MAX_DET})")
    vmode = val.add_mutually_exclusive_group()
    vmode.add_argument("--rect", dest="mode", action="store_const", const="rect", help="per-image rect shapes (default)")
    vmode.add_argument("--square", dest="mode", action="store_const", const="square", help="every image at imgsz x imgsz")
    val.set_defaults(mode="rect")
    val.add_argument("--workers", type=int, default=1, help="processes to shard the images over (default: 1)")
    val.add_argument("--decode-threads", type=int, default=2, help="image decoding threads per process (default: 2)")
    val.add_argument("--evaluator", default="faster-coco-eval", choices=["faster-coco-eval", "pycocotools"],
                     help="COCO evaluator (default: faster-coco-eval)")
    val.add_argument("--metric", choices=["coco", "ultralytics", "yolov5"], default=None,
                     help="the headline figure: coco (the COCO protocol), ultralytics (what `yolo val` prints) or yolov5 "
                          "(what YOLOv5's val.py prints). Default: coco when the ground truth is a COCO json, else the "
                          "metric the model's own trainer prints. All three are computed; --json carries them all")
    add_json_option(val, "the metrics (mAP50_95, mAP50, …, per_class, headline, trainer_metrics)")
    val.add_argument("--save-json", metavar="FILE", help="write the predictions in COCO results format")
    val.add_argument("--save-record", metavar="FILE", help="write a run record (settings, fingerprint, per-image letterbox "
                     "and detections, metrics) for `yoloparity compare`")
    val.add_argument("--resume", metavar="DIR", help="run folder of an earlier run: reuse its finished shards")
    val.add_argument("--run-dir", metavar="DIR", help="where shard files go, kept for --resume (default: runs/val/<time>-<pid> with --workers > 1; "
                                                           "one process keeps them in a temporary folder it removes)")
    val.add_argument("--timeout", type=float, default=600.0, help="seconds a process may go without progress before the run "
                     "is ended with an error naming it (default: 600)")
    val.add_argument("--strict", action="store_true", help="stop at the first unreadable image or label problem")
    val.add_argument("--quiet", action="store_true", help="no progress bar")
    val.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:

    """Validate, print mAP and the reference command, write the JSON and run record asked for."""
    if bool(args.data) == bool(args.data_option):
        raise ValueError("give the dataset once: DATA or --data DATA (a data.yaml, or an image folder with --annotations)")
    args.data = args.data or args.data_option
    load = load_options(args)
    settings = ValOptions(imgsz=square_imgsz(args.imgsz, "val"), batch=args.batch, conf=args.conf, iou=args.iou,
                          max_det=args.max_det, mode=args.mode, evaluator=args.evaluator, metric=args.metric,
                          decode_threads=args.decode_threads, strict=args.strict)
    with progress_bar(0, args.quiet or not is_rank0(), "val") as bar:

        def set_total(total: int) -> None:
            bar.total = total
            bar.refresh()

        report = val(args.model, args.data, settings, load, workers=args.workers, split=args.split,
                     annotations=args.annotations, gt_from_labels=args.gt_from_labels, run_dir=args.run_dir,
                     resume=args.resume, timeout=args.timeout, progress=bar.update, on_total=set_total,
                     log=lambda line: bar.write(line, file=sys.stderr))
    if report is None:  # a non-zero rank under torchrun: rank 0 reports
        return 0
    if args.save_json:
        write_json(args.save_json, report.results)
    if args.save_record:
        from ..auditing.record import build_record, image_entry, save_record

        images = [image_entry(r.file, r.letterbox, r.boxes, r.scores, r.class_ids) for r in report.records]
        backend = {k: report.settings[k] for k in ("backend", "device", "precision", "computes")}
        record, raws = build_record("val", report.spec, report.settings["model"], backend, report.settings, images,
                                    [None] * len(images), report.times, report.metrics.to_dict())
        save_record(args.save_record, record, raws)
    if emit_json(args.json_out, report.to_dict()):
        return 0
    print(format_val_report(report))
    for path, what in ((args.save_json, "COCO results"), (args.json_out, "metrics JSON"), (args.save_record, "run record")):
        if path:
            print(f"{what} written to {path}")
    if report.run_dir:
        print(f"shards in {report.run_dir}")
    return 0


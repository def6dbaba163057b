"""The ``yoloparity`` command line: parses, calls the API, prints. Exit 2 on bad input, one line, no traceback."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections import Counter
from typing import Sequence

from . import __version__
from .errors import InputNotFoundError, YoloParityError
from .backends.base import available_backends, backend_for

EXIT_BAD_INPUT = 2


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default=None, choices=available_backends(),
                   help="runtime that produces the raw head output (default: the reader of MODEL's suffix: torch for .pt, "
                        "onnxruntime for .onnx, openvino for .xml, litert for .tflite); onnxruntime and openvino also take a "
                        ".pt (exported once). Decoding and NMS are shared")
    p.add_argument("--device", default="cpu", help="cpu, cuda:0 … (default: cpu)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads of the backend (default: the runtime's choice)")
    p.add_argument("--half", action="store_true", help="fp16 inference (torch backend on CUDA; an fp16 ONNX file runs in fp16 by itself)")
    p.add_argument("--precision", default=None, choices=["fp32", "fp16", "fp64"],
                   help="torch backend: fp64 runs the unfused network in float64 on the CPU, the exact function every "
                        "float32 run is an approximation of (slow; for checking); fp16 is --half")
    p.add_argument("--int8-input", default="round", choices=["round", "truncate"],
                   help="litert, int8-input files: quantize the image by rounding (default, the inverse of the model's "
                        "dequantization) or by truncation, as Ultralytics' LiteRT backend does")


def backend_options(args: argparse.Namespace) -> dict:
    """The load_model options --threads, --half/--precision and --int8-input ask for, refused where they do not apply."""
    options: dict = {"threads": args.threads} if args.threads else {}
    if args.backend is None:
        args.backend = backend_for(args.model)
    precision = "fp16" if args.half else (args.precision or "fp32")
    if args.half and args.precision not in (None, "fp16"):
        raise ValueError(f"--half and --precision {args.precision} contradict each other")
    if precision != "fp32":
        if args.backend != "torch" and not (precision == "fp16" and args.backend == "openvino"):
            raise ValueError(f"--precision {precision} applies to the torch backend (fp16 also to openvino); for "
                             f"{args.backend} give a file of that precision instead")
        options["precision"] = precision
    if args.int8_input != "round":
        if args.backend != "litert":
            raise ValueError("--int8-input applies to the litert backend (files with an int8 input)")
        options["int8_input"] = args.int8_input
    return options


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yoloparity",
        description="YOLO detection that gives the answer you validated, on every backend and batch size.",
    )
    parser.add_argument("--version", action="version", version=f"yoloparity {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "predict",
        help="detect objects in images, folders, globs or videos",
        description="Batched, batch-invariant inference: every image is letterboxed on its own and batched only "
        "with images of the same input shape, so its detections do not depend on --batch.",
    )
    p.add_argument("model", help="a .pt checkpoint (YOLOv5, YOLOv8, YOLO11), an .onnx export, or an official name like yolov5n.pt")
    p.add_argument("source", nargs="+", help="image file(s), folder(s), glob(s) or video file(s)")
    _add_model_args(p)
    p.add_argument("--imgsz", type=int, nargs="+", default=None, metavar="N",
                   help="inference size: one value (square) or height width (default: the model's, usually 640)")
    p.add_argument("--batch", type=int, default=16, help="images per batch (default: 16); results do not depend on it")
    p.add_argument("--conf", type=float, default=0.25, help="score threshold (default: 0.25)")
    p.add_argument("--iou", type=float, default=None, help="NMS IoU threshold (default: 0.45 for YOLOv5, 0.7 for YOLOv8/11)")
    p.add_argument("--max-det", type=int, default=300, help="most detections kept per image (default: 300)")
    p.add_argument("--classes", type=int, nargs="+", default=None, metavar="ID", help="keep only these class ids")
    p.add_argument("--agnostic", action="store_true", help="class-agnostic NMS")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--rect", dest="mode", action="store_const", const="rect",
                      help="pad each image only to the next stride multiple (default)")
    mode.add_argument("--square", dest="mode", action="store_const", const="square", help="pad every image to imgsz x imgsz")
    p.set_defaults(mode="rect")
    p.add_argument("--decode-threads", type=int, default=2, help="image decoding threads (default: 2)")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable image instead of skipping it")
    p.add_argument("--save-json", metavar="FILE", help="write detections as JSON: one object per image, in input order")
    p.add_argument("--save-dir", metavar="DIR", help="write each image with its detections drawn")
    p.add_argument("--save-record", metavar="FILE", help="write a run record (settings, fingerprint, per-image letterbox "
                   "and detections) for `yoloparity compare`")
    p.add_argument("--record-raw", type=int, default=8, metavar="K",
                   help="with --save-record: keep the raw head outputs of the first K images (default: 8)")
    p.add_argument("--json", action="store_true", help="print the run summary (counts, timings, skipped files) as JSON on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    e = sub.add_parser("export", help="export a .pt checkpoint to ONNX with its spec in the metadata",
                       description="Writes ONNX whose output0 is the raw head tensor; the ModelSpec (names, strides, "
                       "head format, letterbox rule) is embedded so every backend decodes it the same way.")
    e.add_argument("model", help="a .pt checkpoint or an official name like yolov5n.pt")
    e.add_argument("--out", required=True, metavar="FILE", help="the .onnx file to write")
    e.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    e.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    e.add_argument("--imgsz", type=int, nargs="+", default=[640], metavar="N", help="export size: N or H W (default: 640)")
    e.add_argument("--batch", type=int, default=1, help="static batch size when not --dynamic (default: 1)")

    val = sub.add_parser(
        "val", help="COCO mAP on a dataset, the same at any batch size and over any number of processes",
        description="Validates MODEL on DATA (a data.yaml, or an image folder with --annotations) with the reference "
        "validators' settings: each image gets its own rect input shape (the reference's batch-1 rule), multi-label NMS, "
        "conf 0.001, IoU 0.6 (YOLOv5) or 0.7 (YOLOv8/11), max 300 detections. --workers N shards the images over N "
        "processes (torch.distributed, gloo on CPU, nccl on GPUs); the same command runs under torchrun on a cluster. "
        "The predictions, hence the mAP, do not depend on --batch or --workers.")
    val.add_argument("model", help="a .pt checkpoint, an .onnx export, or an official name")
    val.add_argument("data", help="data.yaml (YOLO format) or an image folder (with --annotations)")
    _add_model_args(val)
    val.add_argument("--annotations", metavar="JSON", help="COCO instances json to evaluate against (default: a data.yaml "
                     "of the 80 COCO classes uses its annotations/instances*.json when there is exactly one, else the labels)")
    val.add_argument("--gt-from-labels", action="store_true", help="build the ground truth from the YOLO labels even when a COCO json exists")
    val.add_argument("--split", default="val", help="which split of data.yaml (default: val)")
    val.add_argument("--imgsz", type=int, default=640, help="inference size (default: 640)")
    val.add_argument("--batch", type=int, default=32, help="images per batch (default: 32); results do not depend on it")
    val.add_argument("--conf", type=float, default=0.001, help="score threshold (default: 0.001)")
    val.add_argument("--iou", type=float, default=None, help="NMS IoU (default: 0.6 for YOLOv5, 0.7 for YOLOv8/11)")
    val.add_argument("--max-det", type=int, default=300, help="most detections per image (default: 300)")
    vmode = val.add_mutually_exclusive_group()
    vmode.add_argument("--rect", dest="mode", action="store_const", const="rect", help="per-image rect shapes (default)")
    vmode.add_argument("--square", dest="mode", action="store_const", const="square", help="every image at imgsz x imgsz")
    val.set_defaults(mode="rect")
    val.add_argument("--workers", type=int, default=1, help="processes to shard the images over (default: 1)")
    val.add_argument("--decode-threads", type=int, default=2, help="image decoding threads per process (default: 2)")
    val.add_argument("--evaluator", default="faster-coco-eval", choices=["faster-coco-eval", "pycocotools"],
                     help="COCO evaluator (default: faster-coco-eval)")
    val.add_argument("--json", metavar="FILE", dest="json_out", help="write the metrics as JSON (mAP50_95, mAP50, …, per_class)")
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

    a = sub.add_parser(
        "audit", help="run one model under several configurations and judge how the detections differ",
        description="Runs MODEL on SOURCE under each --config (key=value,... over backend, device, precision, batch, "
        "threads, imgsz, mode, model) and compares every config with the reference (the first --config, or --reference): "
        "per-class counts side by side, matched boxes (IoU, score deltas), raw-output differences, each one-sided "
        "detection classified borderline (explained by the measured numeric noise at a threshold) or real, and the first "
        "stage where an image diverges. Exit 0 within tolerance, 1 outside, 2 on errors. With no --config: torch batch 1 "
        "(reference) vs torch batch 16 and onnxruntime batch 1 and 16 (plus CUDA fp32/fp16 where present).")
    a.add_argument("model", help="a .pt checkpoint or an official name")
    a.add_argument("source", nargs="+", help="image file(s), folder(s) or glob(s)")
    a.add_argument("--config", action="append", metavar="SPEC", help="a configuration, e.g. backend=onnxruntime,batch=16")
    a.add_argument("--reference", metavar="SPEC", help="the reference configuration (default: the first --config)")
    a.add_argument("--repeat", type=int, default=1, help="run every config N times and check run-to-run identity")
    a.add_argument("--deterministic", action="store_true", help="apply every determinism setting the backends offer")
    a.add_argument("--tolerance", action="append", metavar="KEY=VALUE",
                   help="real=0, map_delta=0.005, score_noise=0.001, box_noise=0.5")
    a.add_argument("--data", metavar="DATA", help="a data.yaml (or image folder with --annotations): also compare mAP "
                   "on the audited images it labels (tolerance map_delta)")
    a.add_argument("--annotations", metavar="JSON", help="COCO json for --data")
    a.add_argument("--layers", action="store_true", help="where an image diverges in model numerics, run both models as ONNX "
                   "with every intermediate tensor exposed and name the first layer that differs")
    a.add_argument("--json", metavar="FILE", dest="json_out", help="write the report as JSON (top-level 'verdict')")
    a.add_argument("--html", metavar="FILE", help="write one self-contained HTML page: tables, plots, images that differ")
    a.add_argument("--quiet", action="store_true", help="no progress bar")

    c = sub.add_parser("compare", help="compare two run records (e.g. from two machines)",
                       description="The audit's comparison between two records written by `predict --save-record`: per-class "
                       "counts, matched boxes, one-sided detections classified borderline or real, and every setting and "
                       "environment entry that differs. Exit 0 within tolerance, 1 outside, 2 on errors.")
    c.add_argument("a", help="the reference record")
    c.add_argument("b", help="the record to compare with it")
    c.add_argument("--tolerance", action="append", metavar="KEY=VALUE", help="real=0, score_noise=0.001")
    c.add_argument("--json", metavar="FILE", dest="json_out", help="write the comparison as JSON (top-level 'verdict')")

    q = sub.add_parser(
        "quantize", help="int8 quantization with calibration and an accuracy budget proven by mAP",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Quantize MODEL (.pt or float .onnx) to int8. Calibration images come from DATA by a deterministic "
        "choice, disjoint from the images that measure the accuracy drop (when the dataset has enough). With "
        "--exclude auto the head's decode tail (found by graph structure) stays float; while the mAP50-95 drop "
        "exceeds --max-drop the most quantization-sensitive nodes return to float, step by step.\n\n"
        "exit status: 0 inside the budget; 3 the budget was not met (the best model reached is still written, and "
        "the report says what it kept float); 2 bad input.")
    q.add_argument("model", help=".pt checkpoint (exported at a static imgsz) or float .onnx")
    q.add_argument("--data", required=True, help="dataset .yaml (YOLO) giving calibration and validation images")
    q.add_argument("--format", dest="fmt", default="onnx-qdq", choices=["onnx-qdq", "tflite-int8"],
                   help="onnx-qdq: ONNX Runtime static QDQ (U8S8, per-channel), with accuracy control; tflite-int8: "
                        "full-integer TFLite with int8 input and output via onnx2tf (needs scripts/setup_tflite.sh), "
                        "validated on the litert backend")
    q.add_argument("--calib-images", type=int, default=128, help="calibration images (default: 128)")
    q.add_argument("--calib-method", default="minmax", choices=["minmax", "entropy", "percentile"],
                   help="how activation ranges are chosen (default: minmax)")
    q.add_argument("--exclude", default="auto", metavar="auto|none|NAME,...",
                   help="nodes kept float: auto (the head's decode tail), none, or node names (default: auto)")
    q.add_argument("--max-drop", type=float, default=0.01, help="allowed mAP50-95 drop (default: 0.01)")
    q.add_argument("--val-images", type=int, default=None, help="images that measure the drop (default: all not used for calibration)")
    q.add_argument("--max-steps", type=int, default=6, help="accuracy-control steps at most (default: 6; 0: measure only)")
    q.add_argument("--revert-group", type=int, default=4, help="sensitive tensors returned to float per step (default: 4)")
    q.add_argument("--saturation", default="fix", choices=["fix", "report"],
                   help="int16 pair-sum saturation of x86 CPUs without VNNI (AVX2), emulated on calibration images: "
                        "fix (default) reports per layer and writes every convolution with pair-safe weight scales that "
                        "cannot saturate, so the int8 model computes the same on every x86 CPU; report only reports")
    q.add_argument("--imgsz", type=int, default=640, help="static input size for a .pt (default: 640)")
    q.add_argument("--threads", type=int, default=2, help="CPU threads for validation and latency (default: 2)")
    q.add_argument("--out", default=None, help="output file (default: MODEL-int8.onnx in the current folder)")
    q.add_argument("--json", dest="json_out", metavar="REPORT", default=None, help="write the report as JSON")
    q.add_argument("--quiet", action="store_true", help="no progress output")

    b = sub.add_parser(
        "bench", help="speed, memory and accuracy side by side across backends, precisions and batch sizes",
        description="Benchmark MODEL under every combination of --backends x --precisions x --batch. Per configuration: "
        "images/s and ms/image (median and spread over --repeats, warm-up excluded), the decode / letterbox / "
        "inference / NMS split, peak resident memory (each configuration runs in its own process), model file size, "
        "mAP50-95 on --data, and the share of the machine's peak: model GFLOPs (counted from the ONNX graph) x images/s "
        "over the GFLOP/s of a matrix-multiply probe on the same backend and precision, measured in the same run. "
        "int8 models come from `quantize` (needs --data). A configuration that cannot run here is listed with the reason.")
    b.add_argument("model", help=".pt checkpoint, .onnx, or .tflite (litert only)")
    b.add_argument("--data", default=None, help="dataset .yaml: mAP50-95 per configuration, calibration for int8, and images")
    b.add_argument("--source", default=None, help="images to time (default: the --data images)")
    b.add_argument("--backends", default="torch,onnxruntime,openvino", help="comma list (default: torch,onnxruntime,openvino)")
    b.add_argument("--precisions", default="fp32", help="comma list of fp32, fp16, int8 (default: fp32)")
    b.add_argument("--batch", default="1,8", help="comma list of batch sizes (default: 1,8)")
    b.add_argument("--imgsz", type=int, default=640, help="inference size (default: 640)")
    b.add_argument("--images", type=int, default=16, help="images per timed repeat (default: 16)")
    b.add_argument("--val-images", type=int, default=None, help="use only the first N --data images for mAP (default: all)")
    b.add_argument("--warmup", type=int, default=1, help="untimed passes before the repeats (default: 1)")
    b.add_argument("--repeats", type=int, default=5, help="timed passes (default: 5)")
    b.add_argument("--threads", type=int, default=2, help="threads per configuration (default: 2)")
    b.add_argument("--device", default="cpu", help="cpu or cuda:N for torch/onnxruntime (default: cpu)")
    b.add_argument("--json", dest="json_out", metavar="FILE", default=None, help="write the results as JSON")
    b.add_argument("--html", metavar="FILE", default=None, help="write an HTML page with a speed-vs-accuracy plot")
    b.add_argument("--quiet", action="store_true", help="no progress bar")

    v = sub.add_parser("env", help="print the environment fingerprint that explains numeric differences")
    v.add_argument("--json", action="store_true", help="JSON instead of a table")
    return parser


def _progress_bar(total: int, quiet: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=quiet or None, file=sys.stderr, dynamic_ncols=True)


def _cmd_predict(args: argparse.Namespace) -> int:
    from .data.sources import resolve_source
    from .model import load_model
    from .report.console import format_class_counts, format_stage_times
    from .report.draw import save_drawn
    from .report.jsonio import write_results_json

    options = backend_options(args)
    model = load_model(args.model, backend=args.backend, device=args.device, **options)
    items = resolve_source(args.source if len(args.source) > 1 else args.source[0])
    mode, imgsz, notes = args.mode, args.imgsz, []
    asked = args.imgsz[0] if args.imgsz and len(set(args.imgsz)) == 1 else (tuple(args.imgsz) if args.imgsz else None)
    for note in model.notes:
        notes.append(note)
        print(f"note: {note}", file=sys.stderr)
    fit_mode, size, note = model.backend.constraints.fit_square(args.mode, asked)
    if note:
        mode, imgsz = fit_mode, [size]
        notes.append(note)
        print(f"note: {note}", file=sys.stderr)
    predictor = model.predictor(
        batch=args.batch, imgsz=imgsz, mode=mode, conf=args.conf, iou=args.iou, max_det=args.max_det,
        classes=args.classes, agnostic=args.agnostic, workers=args.decode_threads, strict=args.strict,
        keep_images=bool(args.save_dir), keep_raw=args.record_raw if args.save_record else 0,
    )
    kept, counts, skipped = [], Counter(), []
    with _progress_bar(len(items), args.quiet, "predict") as bar:
        for result in predictor.run(items, progress=bar.update):
            if not result.ok:
                skipped.append(result.error)
                if len(items) > 1:  # a single input's error is the one line below
                    bar.write(f"warning: skipped {result.error}", file=sys.stderr)
                continue
            for cid in result.detections.class_ids:
                counts[model.spec.names[int(cid)]] += 1
            if args.save_dir and result.image is not None:
                save_drawn(result, result.image, args.save_dir)
            kept.append(dataclasses.replace(result, image=None))  # the raw output stays, when kept for the record
    if not kept:  # nothing to write: say why in one line and leave no output files behind
        detail = skipped[0] if len(skipped) == 1 else f"{len(skipped)} inputs skipped, e.g. {skipped[0]}" if skipped else ""
        raise InputNotFoundError(None, f"no image could be read: {detail}" if len(skipped) != 1 else detail)
    stats = predictor.times.to_dict()
    stats.update(model=model.path, backend=args.backend, device=args.device, detections=sum(counts.values()),
                 per_class=dict(counts), notes=notes)
    if args.save_json:
        write_results_json(kept, args.save_json)
        stats["json"] = args.save_json
    if args.save_record:
        from .audit.record import build_record, entries_from_results, save_record

        th, po = predictor.thresholds, predictor.options
        settings = {"conf": th.conf, "iou": th.iou if th.iou is not None else model.spec.default_iou, "max_det": th.max_det,
                    "classes": list(th.classes) if th.classes else None, "agnostic": th.agnostic, "batch": po.batch,
                    "imgsz": list(po.imgsz), "mode": po.mode, "threads": args.threads}
        images, raw_outputs = entries_from_results(kept)
        record, raws = build_record("predict", model, settings, images, raw_outputs, predictor.times.to_dict())
        save_record(args.save_record, record, raws)
        stats["record"] = args.save_record
    if args.save_dir:
        stats["save_dir"] = args.save_dir
    if args.json:
        print(json.dumps(stats, indent=1))
    else:
        print(format_stage_times(stats))
        print(f"{stats['detections']} detections" + (":" if counts else ""))
        if counts:
            print(format_class_counts(dict(counts)))
        for key, label in (("json", "JSON written to"), ("save_dir", "drawn images in"), ("record", "run record written to")):
            if key in stats:
                print(f"{label} {stats[key]}")
    return 0


def _cmd_val(args: argparse.Namespace) -> int:
    from .data.datasets import load_dataset
    from .evaluate.distributed import ValJob, default_run_dir, launched_by_torchrun, validate
    from .evaluate.validator import ValOptions, write_json_atomic
    from .report.console import format_val_report
    from .resources import check_inference_memory

    options = ValOptions(imgsz=args.imgsz, batch=args.batch, conf=args.conf, iou=args.iou, max_det=args.max_det,
                         mode=args.mode, evaluator=args.evaluator, decode_workers=args.decode_threads, strict=args.strict)
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    check_inference_memory(1, (args.imgsz, args.imgsz), "--imgsz")  # before any process or file is made
    # shard files are for resuming and for several processes: one local process without --run-dir keeps them in a
    # temporary folder, removed afterwards, instead of leaving ./runs/val behind
    scratch = None
    if args.workers == 1 and not (args.resume or args.run_dir or launched_by_torchrun()):
        import tempfile

        scratch = tempfile.mkdtemp(prefix="yoloparity-val-")
    run_dir = args.resume or args.run_dir or scratch or default_run_dir()
    if args.resume and not os.path.isdir(args.resume):
        raise YoloParityError(args.resume, "no such run folder to resume")
    loader_options = {k: v for k, v in backend_options(args).items() if k != "threads"}  # also settles args.backend
    job = ValJob(model=args.model, data=args.data, options=options, run_dir=run_dir, backend=args.backend,
                 device=args.device, split=args.split, annotations=args.annotations, gt_from_labels=args.gt_from_labels,
                 resume=bool(args.resume), timeout=args.timeout, threads=args.threads, backend_options=loader_options)
    rank = int(os.environ.get("RANK", 0)) if launched_by_torchrun() else 0
    names, parent_model = None, None
    if rank == 0:  # fail fast on a bad model or dataset, before any process starts
        from .model import load_model

        parent_model = load_model(args.model, backend=args.backend, device="cpu" if args.device.startswith("cuda") else args.device,
                                  **{k: v for k, v in job.backend_options.items() if k != "precision" or v != "fp16"})
        names = parent_model.spec.names
        for note in parent_model.notes:
            print(f"note: {note}", file=sys.stderr)
    total = len(load_dataset(args.data, args.split, args.annotations, names, False, args.gt_from_labels).images) if rank == 0 else 0
    if rank == 0:
        os.makedirs(run_dir, exist_ok=True)
    try:
        with _progress_bar(total, args.quiet or rank != 0, "val") as bar:
            report = validate(job, workers=args.workers, progress=bar.update)
    finally:
        if scratch:
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)
    if report is None:
        return 0
    if args.save_json:
        write_json_atomic(args.save_json, report.results)
    if args.json_out:
        write_json_atomic(args.json_out, report.to_dict())
    if args.save_record:
        from .audit.record import build_record, image_entry, save_record

        images = [image_entry(r.file, r.letterbox, r.boxes, r.scores, r.class_ids) for r in report.records]
        backend = {k: report.settings[k] for k in ("backend", "device", "precision")}
        record, raws = build_record("val", parent_model, report.settings, images, [None] * len(images), report.times,
                                    {k: v for k, v in report.metrics.to_dict().items()}, backend=backend)
        save_record(args.save_record, record, raws)
    print(format_val_report(report))
    for path, what in ((args.save_json, "COCO results"), (args.json_out, "metrics JSON"), (args.save_record, "run record")):
        if path:
            print(f"{what} written to {path}")
    if not scratch:
        print(f"shards in {run_dir}")
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    from .audit.audit import Tolerances, default_configs, run_audit
    from .audit.spec import parse_config
    from .data.sources import resolve_source
    from .evaluate.validator import write_json_atomic
    from .report.console import format_audit

    tolerances = Tolerances.parse(args.tolerance)
    configs = [parse_config(c) for c in args.config or []]
    if args.reference:
        reference = parse_config(args.reference)
    elif configs:
        reference, configs = configs[0], configs[1:]
    else:
        reference, configs = default_configs()
    if not configs:
        raise ValueError("give at least one --config to compare with the reference")
    source = args.source if len(args.source) > 1 else args.source[0]
    total = len(resolve_source(source))
    with _progress_bar(total, args.quiet, "audit") as bar:
        artifacts: dict | None = {} if args.html else None
        dataset = None
        if args.data:
            from .data.datasets import load_dataset

            dataset = load_dataset(args.data, annotations=args.annotations)
        report = run_audit(args.model, source, configs, reference, args.repeat, args.deterministic, tolerances,
                           progress=bar.update, layers=args.layers, artifacts=artifacts, dataset=dataset)
    if args.json_out:
        write_json_atomic(args.json_out, report)
    if args.html:
        from .report.html import audit_html

        page = audit_html(report, artifacts.get("gallery", []), artifacts.get("samples", {}))
        os.makedirs(os.path.dirname(os.path.abspath(args.html)), exist_ok=True)
        with open(args.html, "w") as fh:
            fh.write(page)
    print(format_audit(report))
    return 0 if report["verdict"] == "pass" else 1


def _cmd_compare(args: argparse.Namespace) -> int:
    from .audit.compare import Tolerances, compare_records
    from .audit.record import load_record
    from .evaluate.validator import write_json_atomic
    from .report.console import format_table

    tol = Tolerances.parse(args.tolerance)
    report = compare_records(load_record(args.a), load_record(args.b), tol)
    if args.json_out:
        write_json_atomic(args.json_out, report)
    changed = [[k, v["reference"], v["config"]] for k, v in report["per_class"].items() if v["reference"] != v["config"]]
    print(f"{report['images']} images, {report['images_differing']} differing: {report['real']} real, "
          f"{report['borderline']} borderline differences ({report['raw_images_compared']} images with both raw outputs)")
    if changed:
        print(format_table(["class", "A", "B"], changed, title="Detections per class where the records differ"))
    for loc in report["localization"][:10]:
        print(f"{loc['file']}: {loc['stage']}: {loc['detail']}")
    for line in report["settings_differences"] + report["environment_differences"]:
        print(f"differs: {line}")
    print(f"verdict: {report['verdict'].upper()}")
    return 0 if report["verdict"] == "pass" else 1


def _cmd_export(args: argparse.Namespace) -> int:
    from .model import export_model

    out = export_model(args.model, args.out, imgsz=args.imgsz, dynamic=args.dynamic, opset=args.opset, batch=args.batch)
    print(f"exported {args.model} -> {out} ({os.path.getsize(out) / 1e6:.1f} MB)")
    return 0


def _stderr_log(quiet: bool):
    """Progress lines for people on stderr (stdout stays for the table or JSON); nothing with --quiet."""
    return (lambda line: None) if quiet else (lambda line: print(line, file=sys.stderr))


def _cmd_quantize(args: argparse.Namespace) -> int:
    from .quantize.runner import QuantizeOptions, run_quantize
    from .evaluate.validator import write_json_atomic
    from .report.console import format_quant_report

    options = QuantizeOptions(fmt=args.fmt, calib_images=args.calib_images, calib_method=args.calib_method,
                              exclude=args.exclude, max_drop=args.max_drop, val_images=args.val_images, imgsz=args.imgsz,
                              threads=args.threads, max_steps=args.max_steps, revert_group=args.revert_group,
                              saturation=args.saturation)
    log = _stderr_log(args.quiet)
    report = run_quantize(args.model, args.data, args.out, options, log=log,
                          progress_factory=lambda total, desc: _progress_bar(total, args.quiet, desc))
    if args.json_out:
        write_json_atomic(args.json_out, report.to_dict())
    print(format_quant_report(report))
    return 0 if report.within_budget else 3


def _comma_list(value: str, cast=str) -> tuple:
    try:
        return tuple(cast(v.strip()) for v in value.split(",") if v.strip())
    except ValueError as exc:
        raise ValueError(f"cannot read the list {value!r} ({exc})") from exc


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench.runner import BenchOptions, run_bench
    from .evaluate.validator import write_json_atomic
    from .report.console import BENCH_HEADERS, bench_rows, format_bench

    options = BenchOptions(backends=_comma_list(args.backends), precisions=_comma_list(args.precisions),
                           batches=_comma_list(args.batch, int), imgsz=args.imgsz, warmup=args.warmup,
                           repeats=args.repeats, threads=args.threads, images=args.images, source=args.source,
                           data=args.data, val_images=args.val_images, device=args.device)
    options.check()
    total = len(options.backends) * len(options.precisions) * len(options.batches)
    log = _stderr_log(args.quiet)
    with _progress_bar(total, args.quiet, "bench") as bar:
        report = run_bench(args.model, options, log=log, progress=bar.update)
    if args.json_out:
        write_json_atomic(args.json_out, report)
    if args.html:
        from .report.html import bench_html

        with open(args.html, "w", encoding="utf-8") as fh:
            fh.write(bench_html(report, bench_rows(report), BENCH_HEADERS))
    print(format_bench(report))
    return 0


def _cmd_env(args: argparse.Namespace) -> int:
    from .audit.environment import fingerprint
    from .report.console import format_table

    fp = fingerprint()
    if args.json:
        print(json.dumps(fp, indent=1))
    else:
        print(format_table(["what", "value"], [[k, v] for k, v in fp.items()]))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    handler = {"predict": _cmd_predict, "val": _cmd_val, "audit": _cmd_audit, "compare": _cmd_compare,
               "export": _cmd_export, "env": _cmd_env,
               "quantize": _cmd_quantize, "bench": _cmd_bench}[args.command]
    try:
        return handler(args)
    except YoloParityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

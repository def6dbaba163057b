"""What the commands share: the model options, backend options, progress bars, list parsing, exit codes."""

from __future__ import annotations

import argparse
import sys

from ..backends.base import available_backends, backend_for

EXIT_OK, EXIT_FAIL, EXIT_BAD_INPUT, EXIT_OVER_BUDGET = 0, 1, 2, 3


def add_model_args(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--head", default=None, choices=["one2one", "one2many"],
                   help="end-to-end checkpoints (YOLOv10, YOLO26) carry two heads: one2one (the default, as the "
                        "checkpoint runs: top-k, no NMS) or one2many (the head trained for NMS); the choice is in every "
                        "run record and report. Other models have one head")
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
    if args.head:
        options["head"] = args.head
    if args.int8_input != "round":
        if args.backend != "litert":
            raise ValueError("--int8-input applies to the litert backend (files with an int8 input)")
        options["int8_input"] = args.int8_input
    return options


def progress_bar(total: int, quiet: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=quiet or None, file=sys.stderr, dynamic_ncols=True)


def stderr_log(quiet: bool):
    """Progress lines for people on stderr (stdout stays for the table or JSON); nothing with --quiet."""
    return (lambda line: None) if quiet else (lambda line: print(line, file=sys.stderr))


def comma_list(value: str, cast=str) -> tuple:
    try:
        return tuple(cast(v.strip()) for v in value.split(",") if v.strip())
    except ValueError as exc:
        raise ValueError(f"cannot read the list {value!r} ({exc})") from exc

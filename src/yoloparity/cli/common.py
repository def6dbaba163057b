"""What the commands share: the model options, backend options, progress bars, list parsing, exit codes."""

from __future__ import annotations

import argparse
import json
import sys

from ..backends.registry import (
    BACKENDS,
    PRECISIONS,
    available_backends,
    backends_with,
    is_default_precision,
)
from ..io.atomic import write_json
from ..process_settings import machine_threads
from ..settings import LoadOptions, as_size
from ..types import HEAD_BRANCHES, JsonReport

HALF = "fp16"  # what --half asks for (Ultralytics' and YOLOv5's flag)

EXIT_OK, EXIT_FAIL, EXIT_BAD_INPUT, EXIT_OVER_BUDGET = 0, 1, 2, 3


def add_threads_option(p: argparse.ArgumentParser, what: str) -> None:
    """``--threads``, the same default in every command: this machine's cores, shared out between local workers."""
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help=f"{what} (default: this machine's cores, {machine_threads()} here, shared out between --workers)")


def add_imgsz_option(p: argparse.ArgumentParser, what: str, default: str) -> None:
    """``--imgsz``, the same form in every command (as Ultralytics': one number for a square, or height width)."""
    p.add_argument("--imgsz", type=int, nargs="+", default=None, metavar="N",
                   help=f"{what}: N (square) or H W (default: {default})")


def imgsz_values(values: list[int] | None) -> tuple[int, int] | None:
    """``--imgsz`` as (height, width) (:func:`yoloparity.settings.as_size`), or None; anything else refused naming
    the option."""
    try:
        return as_size(values)
    except ValueError:
        raise ValueError(f"--imgsz takes N or H W (whole numbers >= 1), got {' '.join(str(v) for v in values)}") from None


def square_imgsz(values: list[int] | None, command: str) -> int | None:
    """``--imgsz`` of a command whose input is square (val, quantize, bench: as the reference validators'): N, or
    H W with H == W; a rectangle is refused with why."""
    size = imgsz_values(values)
    if size is None:
        return None
    if size[0] != size[1]:
        raise ValueError(f"{command} runs a square input (the longer side; rect batches are cut from it): give one "
                         f"--imgsz N, got {size[0]} {size[1]}")
    return size[0]


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--backend, --device, --threads, --precision/--half, --head and --int8-input; choices and help from the
    backend registry."""
    lines = "; ".join(BACKENDS[name].capability_line() for name in available_backends())
    p.add_argument("--backend", default=None, choices=available_backends(),
                   help=f"runtime that produces the raw head output (default: the reader of MODEL's suffix). {lines}. "
                        "Decoding and NMS are shared")
    devices = sorted({kind for info in BACKENDS.values() for kind in info.devices})
    p.add_argument("--device", default="cpu", help=f"{', '.join(devices)} (with :N for a GPU; default: cpu)")
    add_threads_option(p, "intra-op threads of the backend")
    p.add_argument("--half", action="store_true", help="--precision fp16")
    where = "; ".join(f"{precision}: " + ", ".join(f"{b.name} ({'/'.join(b.precisions[precision])})"
                                                    for b in BACKENDS.values() if precision in b.precisions)
                      for precision in PRECISIONS)
    p.add_argument("--precision", default=None, choices=list(PRECISIONS),
                   help=f"what the backend computes in, where it can be asked for ({where}). fp64 runs the unfused "
                        "network in float64, the exact function every float32 run approximates (slow; for checking). "
                        "Backends that run files as saved take an fp16 or int8 file instead")
    p.add_argument("--head", dest="head_branch", default=None, choices=list(HEAD_BRANCHES),
                   help="end-to-end checkpoints (YOLOv10, YOLO26) carry two heads: one2one (the default, as the "
                        "checkpoint runs: top-k, no NMS) or one2many (the head trained for NMS); the choice is in every "
                        "run record and report. Other models have one head")
    p.add_argument("--int8-input", default="round", choices=["round", "truncate"],
                   help=f"{', '.join(backends_with(lambda b: b.int8_input))}, int8-input files: quantize the image by "
                        "rounding (default, the inverse of the model's dequantization) or by truncation, as "
                        "Ultralytics' LiteRT backend does")


def load_options(args: argparse.Namespace) -> LoadOptions:
    """The run's :class:`~yoloparity.settings.LoadOptions` from --backend, --device, --threads, --half/--precision,
    --head and --int8-input (the backend's default and its registry's checks are :func:`yoloparity.api.run_settings`'s,
    before anything loads)."""
    if args.half and args.precision not in (None, HALF):
        raise ValueError(f"--half and --precision {args.precision} contradict each other")
    precision = HALF if args.half else args.precision
    return LoadOptions(backend=args.backend, device=args.device, threads=args.threads,
                       precision=None if is_default_precision(precision) else precision, head_branch=args.head_branch,
                       int8_input=args.int8_input)


def progress_bar(total: int, quiet: bool, desc: str):
    """A tqdm bar on stderr counting images (hidden with --quiet or when stderr is not a terminal)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=quiet or None, file=sys.stderr, dynamic_ncols=True)


def stderr_log(quiet: bool):
    """Progress lines for people on stderr (stdout stays for the table or JSON); nothing with --quiet."""
    return (lambda line: None) if quiet else (lambda line: print(line, file=sys.stderr))


STDOUT = "-"


def add_json_option(p: argparse.ArgumentParser, what: str) -> None:
    """``--json [FILE]``, the same in every command: with FILE, ``what`` is written there as JSON and the table still
    printed; alone (or ``-``), the JSON goes to stdout instead of the table."""
    p.add_argument("--json", nargs="?", const=STDOUT, default=None, metavar="FILE", dest="json_out",
                   help=f"{what} as JSON: into FILE, or with no FILE (or -) on stdout instead of the table")


def emit_json(target: str | None, payload) -> bool:
    """Write ``payload`` (JSON values, or a typed report: its ``to_dict()``) where ``--json`` asked; True when it went
    to stdout (the caller then prints no table)."""
    if isinstance(payload, JsonReport):
        payload = payload.to_dict()
    if target == STDOUT:
        print(json.dumps(payload, indent=1, default=str))
        return True
    if target:
        write_json(target, payload)
    return False


def comma_list(value: str, cast=str) -> tuple:
    """``"1,8,32"`` → ``(1, 8, 32)`` with ``cast``; a bad item is an error naming the list."""
    try:
        return tuple(cast(v.strip()) for v in value.split(",") if v.strip())
    except ValueError as exc:
        raise ValueError(f"cannot read the list {value!r} ({exc})") from exc

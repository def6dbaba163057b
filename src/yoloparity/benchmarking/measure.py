"""``yoloparity bench``: speed, memory and accuracy across backends, precisions and batch sizes.

Each configuration's model file is prepared here (ONNX export, fp16 conversion, int8 from
``quantize``), then the configuration runs in its own process (:mod:`.worker`). A configuration
that cannot run on this machine is listed with the reason, never dropped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Callable

from ..backends.int8_weights import runtime_notes
from ..backends.litert_backend import LiteRTBackend
from ..backends.metadata import onnx_file_precision
from ..backends.registry import (
    DEFAULT_PRECISION,
    FILE_PRECISIONS,
    PRECISIONS,
    available_backends,
    backend_info,
    backends_with,
    device_kind,
    device_names,
    is_default_precision,
    is_quantized_precision,
    precision_info,
)
from ..environment import fingerprint
from ..errors import InputNotFoundError
from ..models.hub import resolve_model_path
from ..process_settings import machine_threads
from ..quantization.formats import int8_format_for
from ..types import JsonReport
from .probe import probe_gflops
from .recommend import recommend

BACKENDS = tuple(available_backends())
# what bench can run: a precision a backend is asked for, or one a file is made in (int8 by quantize, fp16 by conversion)
BENCH_PRECISIONS = tuple(dict.fromkeys(PRECISIONS + FILE_PRECISIONS))
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class BenchOptions:
    """What ``bench`` measures: the backends x precisions x batch sizes, the input size, repeats, threads, the
    images timed and (with ``data``) the labelled images whose mAP is measured per configuration."""
    backends: tuple[str, ...] = ("torch", "onnxruntime", "openvino")
    precisions: tuple[str, ...] = ("fp32",)
    batches: tuple[int, ...] = (1, 8)
    imgsz: int | None = None  # None: the model's own size (ModelSpec.square_size), resolved by run_bench
    warmup: int = 1
    repeats: int = 5
    threads: int | None = None  # None: machine_threads(), resolved here (every command's one default)
    images: int = 16
    source: str | None = None
    data: str | None = None
    val_images: int | None = None
    device: str = "cpu"
    recommend: bool = True  # audit every configuration against the reference and name the fastest that matches

    def __post_init__(self) -> None:
        """Refuse names and counts that cannot run, naming the known ones: a BenchOptions that exists is valid."""
        object.__setattr__(self, "threads", self.threads or machine_threads())
        for b in self.backends:
            if b not in BACKENDS:
                raise ValueError(f"--backends: unknown backend '{b}'; choose from {', '.join(BACKENDS)}")
        for p in self.precisions:
            if p not in BENCH_PRECISIONS:
                raise ValueError(f"--precisions: unknown precision '{p}'; choose from {', '.join(BENCH_PRECISIONS)}")
        if any(b < 1 for b in self.batches) or self.repeats < 1 or self.warmup < 0 or self.images < 1:
            raise ValueError("--batch values, --repeats and --images must be >= 1 and --warmup >= 0")


@dataclass
class ConfigResult:
    """One configuration's measurements (or why it was skipped or failed)."""
    backend: str
    precision: str
    batch: int
    status: str  # ok | skipped | failed
    reason: str = ""
    model_file: str = ""
    file_size_mb: float | None = None
    images_per_s: dict | None = None
    ms_per_image: dict | None = None
    stages_ms: dict | None = None
    peak_rss_mb: float | None = None
    peak_gpu_mb: float | None = None
    map50_95: float | None = None
    map50: float | None = None
    gflops: float | None = None
    probe_gflops_per_s: float | None = None
    probe: str = ""
    peak_share: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class BenchReport(JsonReport):
    """What ``bench`` measured: every configuration's :class:`ConfigResult` (speed, stage times, memory, mAP, share of
    the machine's peak), the model's GFLOPs, the machine, the fastest int8 within budget and, when asked, the
    recommended configuration. ``to_dict()`` is the ``--json`` schema (``schema`` 1)."""
    model: str
    gflops: float | None
    options: BenchOptions
    machine: dict
    results: tuple[ConfigResult, ...]
    int8_choice: dict
    recommended: dict | None
    notes: tuple[str, ...]
    schema: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        """The report as JSON values."""
        return {"schema": self.schema, "model": self.model, "gflops": self.gflops, "options": asdict(self.options),
                "machine": self.machine, "results": [asdict(r) for r in self.results], "int8_choice": self.int8_choice,
                "recommended": self.recommended, "notes": list(self.notes)}


class _Preparer:
    """Model files per (backend, precision), made once per run; None plus a reason when impossible."""

    def __init__(self, model: str, options: BenchOptions, workdir: str, log: Callable[[str], None]):

        self.path = resolve_model_path(model)
        if not os.path.isfile(self.path):
            raise InputNotFoundError(self.path, "no such model file")
        self.suffix = os.path.splitext(self.path)[1].lower()
        self.options, self.workdir, self.log = options, workdir, log
        self._cache: dict[tuple[str, str], tuple[str | None, str]] = {}

    def float_onnx(self) -> str | None:
        if self.suffix == ".onnx":
            return self.path
        if self.suffix == ".pt":
            from ..yolo_model import cached_onnx_export

            return cached_onnx_export(self.path)
        return None

    def _make(self, backend: str, precision: str) -> tuple[str | None, str]:
        """The file ``backend`` runs at ``precision``, from its registry entry: a precision the backend can be asked
        for runs the model (or its ONNX export) as given; otherwise a backend that runs files at their saved
        precision gets an fp16 or int8 file made here."""
        info = backend_info(backend)
        kind = device_kind(self.options.device)
        if kind not in info.devices:
            return None, f"{backend} runs on {'/'.join(info.devices)} here"
        if precision in info.precisions:
            if kind not in info.precisions[precision]:
                kinds = info.precisions[precision]
                return None, f"{precision} on {backend} needs {device_names(kinds)} (--device {kinds[0]})"
            source, reason = self._file_read_by(info)
            if source and info.runs_file_precision and source == self.path and self._stored(info) != precision:
                return None, f"this {self.suffix} file is {self._stored(info)}"
            return source, reason
        if not info.runs_file_precision or not precision_info(precision).saved:
            return None, (f"no {precision} path on {backend} (its precisions: {', '.join(info.precisions)}; {precision} "
                          f"files run on {', '.join(backends_with(lambda b: b.runs_file_precision))})")
        return self._file_of_precision(info, precision)

    def _file_read_by(self, info) -> tuple[str | None, str]:
        if self.suffix in info.reads:
            return self.path, ""
        if self.suffix == ".pt" and info.exports_pt:
            return self.float_onnx(), ""
        return None, f"{info.name} reads {'/'.join(info.reads)} files" + (" (or a .pt)" if info.exports_pt else "")

    def _stored(self, info) -> str:
        """The precision the given file was saved in (what a backend that runs files as saved computes in)."""
        if self.suffix == ".tflite":
            return LiteRTBackend(self.path).precision
        return onnx_file_precision(self.path) if self.suffix == ".onnx" else DEFAULT_PRECISION

    def _file_of_precision(self, info, precision: str) -> tuple[str | None, str]:
        """An fp16 or int8 file for a backend that runs files as saved: the given one, or one made from it."""
        if self.suffix in info.reads and self.suffix != ".pt":
            stored = self._stored(info)
            return (self.path, "") if stored == precision else (None, f"this {self.suffix} file is {stored}")
        fmt = int8_format_for(info.name)
        made_from_onnx = fmt is not None and fmt.suffix == ".onnx"
        if not made_from_onnx:  # a file of its own kind, made by quantize from the checkpoint
            if self.suffix != ".pt" or fmt is None or not is_quantized_precision(precision):
                return None, (f"{info.name} runs {'/'.join(info.reads)} files: int8 is made by quantize --format "
                              f"{fmt.name if fmt else '?'}; for fp32/fp16 give such a MODEL")
            if not self.options.data:
                return None, f"int8 needs --data (calibration images for quantize --format {fmt.name})"
            return self.int8_file(fmt.name, fmt.suffix), ""
        onnx_path = self.float_onnx()
        if onnx_path is None:
            return None, f"{info.name} needs an ONNX file"
        if not is_quantized_precision(precision):
            return self.converted_onnx(onnx_path, precision), ""
        # int8: the quantize command's model, calibrated on --data; one file serves onnxruntime and openvino
        if not self.options.data:
            return None, "int8 needs --data (calibration images for quantize)"
        return self.int8_onnx(onnx_path), ""

    def converted_onnx(self, onnx_path: str, precision: str) -> str:
        """The float ONNX file converted to ``precision``'s float type (weights only: inputs and outputs stay fp32)."""
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        if precision_info(precision).numpy_dtype != "float16":
            raise ValueError(f"no {precision} ONNX file can be made here (float16 only)")
        out = os.path.join(self.workdir, f"model-{precision}.onnx")
        if not os.path.exists(out):
            onnx.save(convert_float_to_float16(onnx.load(onnx_path), keep_io_types=True), out)
        return out

    def int8_file(self, fmt: str, suffix: str) -> str:
        """An int8 file of format ``fmt`` made from the checkpoint by quantize (32 calibration images)."""
        from ..quantization.runner import QuantizeOptions, run_quantize

        out = os.path.join(self.workdir, f"model-int8{suffix}")
        self.log(f"int8: converting with yoloparity quantize --format {fmt} (32 calibration images)")
        run_quantize(self.path, self.options.data, out,
                     QuantizeOptions(fmt=fmt, calib_images=32, val_images=16, latency_repeats=1,
                                     imgsz=self.options.imgsz, threads=self.options.threads, max_drop=0.99),
                     log=lambda _: None)
        return out

    def int8_onnx(self, onnx_path: str) -> str:
        out = os.path.join(self.workdir, "model-int8.onnx")
        if os.path.exists(out):  # made for the other backend already
            return out
        from ..quantization.runner import QuantizeOptions, run_quantize

        self.log("int8: quantizing with 32 calibration images (yoloparity quantize, --exclude auto)")
        run_quantize(onnx_path, self.options.data, out,
                     QuantizeOptions(calib_images=32, max_steps=0, val_images=16, latency_repeats=1,
                                     imgsz=self.options.imgsz, threads=self.options.threads), log=lambda _: None)
        return out

    def get(self, backend: str, precision: str) -> tuple[str | None, str]:
        key = (backend, precision)
        if key not in self._cache:
            try:
                self._cache[key] = self._make(backend, precision)
            except Exception as exc:  # a failed preparation is this configuration's result, with its reason
                self._cache[key] = (None, f"could not prepare the model: {str(exc).splitlines()[0][:200]}")
        return self._cache[key]


def _bench_images(options: BenchOptions) -> list[str]:
    from ..data.sources import resolve_source

    if options.source:
        items = resolve_source(options.source)
        paths = [i.path for i in items if getattr(i, "path", None)]
    elif options.data:
        from ..data.datasets import load_dataset

        paths = [e.path for e in sorted(load_dataset(options.data).images, key=lambda e: e.id)]
    else:
        raise ValueError("bench needs images: give --source DIR or --data DATA.yaml")
    if not paths:
        raise InputNotFoundError(options.source or options.data, "no images found")
    return [paths[i % len(paths)] for i in range(options.images)]


def _val_dataset(options: BenchOptions):
    """The labelled images every configuration's mAP is measured on (the worker's choice), or None without --data."""
    if not options.data:
        return None
    from ..data.datasets import load_dataset

    dataset = load_dataset(options.data)
    if options.val_images:
        dataset = dataset.subset(sorted(dataset.images, key=lambda e: e.id)[: options.val_images])
    return dataset


def _run_worker(job: dict) -> dict:
    proc = subprocess.run([sys.executable, "-m", "yoloparity.benchmarking.worker"], input=json.dumps(job), capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": str(job["threads"])})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": "failed", "reason": f"worker exited with {proc.returncode}: {tail[:300]}"}
    return json.loads(lines[-1])


def model_spec(model: str):
    """The model's spec as its default backend reads it: its own image size (the size a .pt was trained at, a static
    file's input, every command's default) and its class names (checked against --data before any work)."""
    from ..yolo_model import load_model

    with load_model(model) as loaded:
        return loaded.spec


def _fit_to_model(model: str, options: BenchOptions, log: Callable[[str], None]) -> BenchOptions:
    """The options with the model's own image size where none was given, after checking --data names its classes."""
    if options.imgsz is not None and not options.data:
        return options
    spec = model_spec(model)
    if options.data:
        from ..data.datasets import check_model_classes, load_dataset

        warning = check_model_classes(load_dataset(options.data), spec.names, options.data)
        if warning:
            log(f"warning: {warning}")
    return options if options.imgsz is not None else dataclasses.replace(options, imgsz=spec.square_size)


def run_bench(model: str, options: BenchOptions, log: Callable[[str], None] = print, progress=None) -> BenchReport:
    """Prepare each configuration's model file, run each in its own process, probe the machine's peak, and
    return the report (rows, the fastest int8 within budget, the environment)."""
    from .flops import count_gflops

    images = _bench_images(options)
    options = _fit_to_model(model, options, log)
    with tempfile.TemporaryDirectory(prefix="yoloparity-bench-") as workdir:
        prep = _Preparer(model, options, workdir, log)
        onnx_path = prep.float_onnx()
        gflops = count_gflops(onnx_path, (options.imgsz, options.imgsz)) if onnx_path else None
        probes: dict[tuple[str, str], tuple[float | None, str]] = {}
        results: list[ConfigResult] = []
        coco: dict[str, list | None] = {}  # each configuration's COCO rows on --data (for the recommendation)
        plan = [(b, p, n) for b in options.backends for p in options.precisions for n in options.batches]
        for backend, precision, batch in plan:
            file, reason = prep.get(backend, precision)
            entry = ConfigResult(backend, precision, batch, "skipped", reason=reason, model_file=file or "")
            if file:
                entry.file_size_mb = os.path.getsize(file) / 1e6
                job = {"backend": backend, "precision": precision, "batch": batch, "model_file": file,
                       "threads": options.threads, "imgsz": options.imgsz, "images": images, "warmup": options.warmup,
                       "repeats": options.repeats, "data": options.data, "val_images": options.val_images,
                       "device": options.device}
                out = _run_worker(job)
                coco[f"{backend} {precision} b{batch}"] = out.pop("coco_results", None)
                entry.status, entry.reason = out.pop("status"), out.pop("reason", "")
                for key in ("images_per_s", "ms_per_image", "stages_ms", "peak_rss_mb", "peak_gpu_mb", "map50_95", "map50"):
                    setattr(entry, key, out.pop(key, None))
                entry.extra = out
                if entry.status == "ok":
                    if (backend, precision) not in probes:
                        probes[(backend, precision)] = probe_gflops(backend, precision, options.threads, job["device"])
                    entry.probe_gflops_per_s, entry.probe = probes[(backend, precision)]
                    entry.gflops = gflops
                    if gflops and entry.probe_gflops_per_s:
                        entry.peak_share = gflops * entry.images_per_s["median"] / entry.probe_gflops_per_s
                    elif not gflops:
                        entry.probe = "no GFLOPs count: the model has no ONNX graph to count from"
            results.append(entry)
            if progress:
                progress(1)
        rows = [asdict(r) for r in results]
        dataset = _val_dataset(options)
        recommended = recommend(prep.path, rows, coco, images, dataset, options.imgsz, log=log) \
            if options.recommend else None
    fp = fingerprint()
    return BenchReport(
        model=prep.path, gflops=gflops, options=options,
        machine={"cpu": fp.get("cpu") or platform.processor(), "isa": fp.get("cpu.isa"),
                 "int8_dot_product": fp.get("cpu.int8_dot_product"), "threads": options.threads},
        results=tuple(results),
        int8_choice=fastest_int8(rows, fp.get("cpu.int8_dot_product", "unknown"), coco=coco, dataset=dataset),
        recommended=recommended,
        notes=tuple(sorted({note for r in results if is_quantized_precision(r.precision) and r.model_file
                            for note in runtime_notes(r.model_file, "cpu")})))


INT8_BUDGET = 0.005  # mAP50-95 an int8 path may lose against its own backend's float path to be recommended


def fastest_int8(rows: list[dict], cpu_kind: str, budget: float = INT8_BUDGET, coco: dict | None = None,
                 dataset=None) -> dict:
    """The fastest int8 configuration whose drop from the float path it replaces is shown inside ``budget``.

    Each int8 row is compared with the fp32 row of the same backend and batch (the float path a user would
    otherwise run there); for litert, whose float file is another input, with the best fp32 row of the run. With
    the configurations' COCO rows (``coco``, by label) on ``dataset``, the drop comes with a paired bootstrap
    interval and counts as within only when the interval's upper end is (:func:`..evaluate.bootstrap.budget_verdict`);
    without them, on the point drop. The answer belongs to this CPU kind (``vnni`` or ``int16-pairs``): int8 speed
    and accuracy differ between them.
    """
    from ..evaluate.bootstrap import PerImageEvaluation, budget_verdict, paired_bootstrap

    def label(r: dict) -> str:
        return f"{r['backend']} {r['precision']} b{r['batch']}"

    ok = [r for r in rows if r["status"] == "ok" and r.get("images_per_s")]
    floats = [r for r in ok if is_default_precision(r["precision"])]
    ids = [e.id for e in dataset.images] if dataset is not None else []
    candidates = []
    for r in (r for r in ok if is_quantized_precision(r["precision"])):
        same = [f for f in floats if f["backend"] == r["backend"] and f["batch"] == r["batch"]]
        base = same[0] if same else max(floats, key=lambda f: f["images_per_s"]["median"], default=None)
        if base is None:
            continue
        drop = (base["map50_95"] - r["map50_95"]) if base.get("map50_95") is not None and r.get("map50_95") is not None else None
        interval = verdict = None
        if coco and dataset is not None and coco.get(label(base)) and coco.get(label(r)) is not None:
            iv = paired_bootstrap(PerImageEvaluation(dataset, coco[label(base)]), PerImageEvaluation(dataset, coco[label(r)]), ids)
            interval, verdict = iv.to_dict(), budget_verdict(iv, budget).to_dict()
        within = verdict["status"] == "within" if verdict else (drop is not None and drop <= budget)
        candidates.append({"backend": r["backend"], "batch": r["batch"], "images_per_s": r["images_per_s"]["median"],
                           "float": f"{base['backend']} fp32 b{base['batch']}",
                           "speedup": r["images_per_s"]["median"] / base["images_per_s"]["median"], "drop": drop,
                           "interval": interval, "verdict": verdict, "within_budget": within})
    good = [c for c in candidates if c["within_budget"]]
    choice = max(good, key=lambda c: c["images_per_s"]) if good else None
    reason = "" if choice else ("no int8 configuration ran" if not candidates else
                                "no int8 configuration has its mAP measured (give --data)" if all(c["drop"] is None for c in candidates)
                                else f"no int8 configuration has its drop shown inside {budget} mAP50-95")
    return {"cpu_kind": cpu_kind, "budget": budget, "choice": choice, "candidates": candidates, "reason": reason}

"""The public functions behind the commands: ``predict_files``, ``val``, ``audit``, ``compare``, ``quantize``, ``bench``.

Each is the whole command without the printing: the command line (:mod:`yoloparity.cli`) parses its
arguments, calls one of these and formats what it returns. Progress goes to an optional ``progress``
callback (called with the number of items just finished) and remarks to ``log`` (one line each).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Callable, Sequence

from .auditing.spec import RunConfig, parse_config
from .backends.registry import DEFAULT_PRECISION, backend_info, device_kind
from .benchmarking.measure import BenchOptions, BenchReport, run_bench
from .data.sources import resolve_source
from .errors import YoloParityError
from .evaluate.validator import ValOptions
from .models.reference_commands import reference_note
from .predicting.ray_engine import predict_ray
from .predicting.sharded import PredictJob, build_predictor, predict_sharded
from .predicting.summary import PredictSummary
from .resources import check_inference_memory
from .sharding import default_run_dir, is_rank0, launched_by_torchrun
from .settings import InferenceSettings, LoadOptions
from .yolo_model import load_model, resolve_load

Progress = Callable[[int], None]
Log = Callable[[str], None]


def _quiet(_line: str) -> None:
    pass


def run_settings(model: str, settings_type, settings=None, load: LoadOptions | None = None,
                 options: dict | None = None) -> tuple:
    """A run's one pair of settings, built once from the API's keywords: ``settings`` (of ``settings_type``, e.g.
    :class:`~yoloparity.settings.InferenceSettings`) and ``load`` with every keyword of ``options`` naming one of
    their fields applied, the backend decided (the reader of the file's suffix when none was given). An unknown
    keyword is refused with the known ones."""
    rest = dict(options or {})
    settings = settings_type.take(rest, settings)
    load = LoadOptions.take(rest, load)
    if rest:
        known = settings_type.field_names() + LoadOptions.field_names()
        raise TypeError(f"unknown settings {sorted(rest)}; settings are {', '.join(known)}")
    _, load = resolve_load(model, load)  # the backend decided and the options checked against it, once
    return settings, load


def val(model: str, data: str, settings: ValOptions | None = None, load: LoadOptions | None = None, *,
        workers: int = 1, split: str = "val", annotations: str | None = None, gt_from_labels: bool = False,
        run_dir: str | None = None, resume: str | None = None, timeout: float = 600.0, progress: Progress | None = None,
        on_total: Callable[[int], None] | None = None, log: Log = _quiet, **options: Any):
    """COCO metrics of ``model`` on ``data`` with the reference validators' settings; the same predictions at any
    ``batch`` and any number of ``workers`` (local processes). Returns the :class:`~yoloparity.evaluate.validator.
    ValReport` (None on the non-zero ranks of a torchrun launch).

    ``settings`` (:class:`~yoloparity.evaluate.validator.ValOptions`) and ``load``
    (:class:`~yoloparity.settings.LoadOptions`) are the run's settings; keywords naming their fields (``imgsz``,
    ``batch``, ``conf``, ``evaluator``, ``metric``, ``backend``, ``device``, ``precision``, ``threads`` …) change them.
    Shard files go to ``run_dir`` (kept, for ``resume``); one local process without ``run_dir`` uses a temporary
    folder it removes. ``on_total`` hears the number of images once the dataset is read (for a progress bar)."""
    from .evaluate.distributed import ValJob, validate

    settings, load = run_settings(model, ValOptions, settings, load, options)
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if settings.imgsz is not None:  # None: the model's own size, known once it is loaded
        check_inference_memory(1, settings.imgsz, "--imgsz")  # before any process or file is made
    if resume and not os.path.isdir(resume):
        raise YoloParityError(resume, "no such run folder to resume")
    scratch = None
    if workers == 1 and not (resume or run_dir or launched_by_torchrun()):
        scratch = tempfile.mkdtemp(prefix="yoloparity-val-")
    run_dir = resume or run_dir or scratch or default_run_dir("val")
    job = ValJob(model=model, data=data, options=settings, run_dir=run_dir, load=load, split=split,
                 annotations=annotations, gt_from_labels=gt_from_labels, resume=bool(resume), timeout=timeout)
    try:
        if is_rank0():
            total = _check_val_inputs(job, log)  # fail fast on a bad model or dataset, before any process starts
            if on_total:
                on_total(total)
            os.makedirs(run_dir, exist_ok=True)
        report = validate(job, workers=workers, progress=progress)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    if report is not None:
        report.run_dir = None if scratch else run_dir
        report.reference = reference_note(report.spec, "val", model, data, report.settings)
    return report


ENGINES = ("torch-distributed", "ray")


def predict_files(model: str, source, settings: InferenceSettings | None = None, load: LoadOptions | None = None, *,
                  engine: str = "torch-distributed", workers: int = 1, ray_address: str | None = None,
                  save_jsonl: str | None = None, save_json: str | None = None, save_dir: str | None = None,
                  run_dir: str | None = None, resume: str | None = None, timeout: float = 600.0,
                  progress: Progress | None = None, on_total: Callable[[int], None] | None = None,
                  on_result: Callable | None = None, log: Log = _quiet, **options: Any) -> PredictSummary | None:
    """Predict every input of ``source`` into files, over ``workers`` local processes (torch.distributed; the same
    call runs as one rank under torchrun) or Ray actors (``engine="ray"``): one JSON Lines row per input in input
    order (``save_jsonl``, streamed; flat memory at any size) and/or the ``--save-json`` array (``save_json``).
    The rows are the same bytes for any ``batch``, ``workers`` and engine. Returns the run's
    :class:`~yoloparity.predicting.summary.PredictSummary` (counts of images done, skipped with their reasons, failed;
    stage times; merge time; what ran), None on the other torchrun ranks.

    ``settings`` (:class:`~yoloparity.settings.InferenceSettings`) and ``load``
    (:class:`~yoloparity.settings.LoadOptions`) are the run's settings, carried unchanged to every worker and actor;
    keywords naming their fields (``imgsz``, ``batch``, ``conf``, ``backend``, ``precision`` …) change them.
    ``on_result`` (one process only) hears every result (e.g. to build a run record; ``on_result.keep_raw = K``
    keeps the raw head outputs of the first K images)."""
    _check_engine_options(engine, workers, resume, run_dir, save_dir, on_result)
    sources = tuple(os.fspath(s) for s in ([source] if isinstance(source, (str, os.PathLike)) else source))
    settings, load = run_settings(model, InferenceSettings, settings, load, options)
    in_process = engine == "torch-distributed" and workers == 1 and not launched_by_torchrun()
    items = _checked_inputs(model, sources, settings, load, in_process, on_total)
    if engine == "ray":
        return predict_ray(model, sources, settings, load, items=items, actors=workers, address=ray_address,
                           save_jsonl=save_jsonl, save_json=save_json, progress=progress)
    scratch = tempfile.mkdtemp(prefix="yoloparity-predict-") if in_process and not (resume or run_dir) else None
    job = PredictJob(model=model, sources=sources, run_dir=resume or run_dir or scratch or default_run_dir("predict"),
                     settings=settings, load=load, save_jsonl=save_jsonl, save_json=save_json, save_dir=save_dir,
                     resume=bool(resume), timeout=timeout,
                     # in this process only: spawned workers resolve the sources themselves
                     on_result=on_result if in_process else None, items=items if in_process else None)
    try:
        summary = predict_sharded(job, workers, progress)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return summary.replace(run_dir=None) if summary is not None and scratch else summary


def _check_engine_options(engine: str, workers: int, resume: str | None, run_dir: str | None, save_dir: str | None,
                          on_result) -> None:
    """Settings that contradict the engine or each other, refused before anything loads."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if resume and not os.path.isdir(resume):
        raise YoloParityError(resume, "no such run folder to resume")
    if engine == "ray" and (resume or run_dir or save_dir):
        raise ValueError("--resume, --run-dir and --save-dir belong to the torch-distributed engine; with --engine ray, "
                         "Ray retries failed tasks itself and the rows go to --save-jsonl/--save-json")
    if on_result is not None and (workers > 1 or engine != "torch-distributed" or launched_by_torchrun()):
        raise ValueError("results are handed back (e.g. for a run record) by one process only: drop --workers/--engine, "
                         "or use the JSON Lines output")


def _checked_inputs(model: str, sources, settings: InferenceSettings, load: LoadOptions, in_process: bool,
                    on_total) -> list | None:
    """The resolved inputs, when known up front. Before any process or actor starts, a bad model, setting or source
    fails fast here (in the order the user gave them); one process finds them itself, at once."""
    items = None
    if is_rank0() and not in_process:
        with _load_for_checks(model, load) as parent:
            build_predictor(parent, settings)
        items = resolve_source(list(sources))
    elif in_process and on_total:
        try:
            items = resolve_source(list(sources))
        except YoloParityError:
            pass  # the worker says it, after a bad model if both are bad
    if on_total and items is not None:
        on_total(len(items))
    return items


def _load_for_checks(model: str, load: LoadOptions):
    """The model loaded in the launching process only to check it and the settings before workers start: on the CPU
    (the GPUs are the workers'), without a precision the CPU cannot run there (the workers' business)."""
    device = "cpu" if device_kind(load.device) != "cpu" else load.device
    precision = load.precision or DEFAULT_PRECISION
    if not backend_info(load.backend).runs_precision_on(precision, device):
        load = load.replace(precision=None)
    return load_model(model, options=load.replace(device=device))


def _check_val_inputs(job, log: Log) -> int:
    """Load the model and the dataset once in this process (errors name the bad input); the dataset's image count."""
    from .data.datasets import check_model_classes, load_dataset

    with _load_for_checks(job.model, job.load) as parent:
        for note in parent.notes:
            log(f"note: {note}")
        names = parent.spec.names
    dataset = load_dataset(job.data, job.split, job.annotations, names, False, job.gt_from_labels)
    warning = check_model_classes(dataset, names, job.data)
    if warning:
        log(f"warning: {warning}")
    return len(dataset.images)


def audit(model: str, source, configs: Sequence = (), reference=None, *, repeat: int = 1, deterministic: bool = False,
          tolerances=None, layers: bool = False, data: str | None = None, annotations: str | None = None,
          gallery: int = 6, progress: Progress | None = None, log: Log = _quiet):
    """Run ``model`` under each configuration (``RunConfig`` or ``"key=value,..."`` strings) on the images of
    ``source`` and compare each with ``reference`` (default: the first configuration; with none at all, torch fp32
    batch 1 against torch batch 16 and ONNX Runtime batch 1 and 16). Returns an
    :class:`~yoloparity.auditing.audit.AuditResult`: ``.report`` the typed report (``.verdict``, ``.configs``,
    ``to_json()``: the schema ``--json`` writes),
    ``.gallery`` up to ``gallery`` differing images per configuration and ``.samples`` the matched IoUs and score
    deltas, which :func:`yoloparity.report.html.audit_html` draws."""
    from .auditing.audit import default_configs, run_audit
    from .auditing.compare import Tolerances

    parsed = [c if isinstance(c, RunConfig) else parse_config(c) for c in configs]
    if reference is not None:
        ref = reference if isinstance(reference, RunConfig) else parse_config(reference)
    elif parsed:
        ref, parsed = parsed[0], parsed[1:]
    else:
        ref, parsed = default_configs()
    if not parsed:
        raise ValueError("give at least one --config to compare with the reference")
    dataset = None
    if data:
        from .data.datasets import check_model_classes, load_dataset

        dataset = load_dataset(data, annotations=annotations)
        with load_model(model) as loaded:
            warning = check_model_classes(dataset, loaded.spec.names, data)  # fewer names than classes: an error
        if warning:
            log(f"warning: {warning}")
    return run_audit(model, source, parsed, ref, repeat, deterministic, tolerances or Tolerances(), progress=progress,
                     layers=layers, gallery_size=gallery, dataset=dataset)


def compare(a: str, b: str, tolerances=None):
    """The audit's comparison of two run records (``predict``/``val`` ``--save-record``), e.g. from two machines: a
    :class:`~yoloparity.auditing.compare.CompareReport` (``.verdict``, ``.summary``, ``to_json()``)."""
    from .auditing.compare import Tolerances, compare_records
    from .auditing.record import load_record

    return compare_records(load_record(a), load_record(b), tolerances or Tolerances())


def quantize(model: str, data: str, out: str | None = None, *, progress_factory=None, log: Log = _quiet, **options: Any):
    """int8 with calibration and an accuracy budget proven by mAP on held-out images of ``data``; ``options`` are
    :class:`~yoloparity.quantization.runner.QuantizeOptions` fields (``fmt``, ``calib_images``, ``exclude``, ``max_drop`` …).
    Returns the report; ``report.within_budget`` says whether the drop stayed inside ``max_drop``."""
    from .quantization.runner import QuantizeOptions, run_quantize

    return run_quantize(model, data, out, QuantizeOptions(**options), log=log, progress_factory=progress_factory)


def bench(model: str, *, progress: Progress | None = None, log: Log = _quiet, **options: Any) -> BenchReport:
    """Speed (median and spread), stage split, memory, file size and mAP per backend x precision x batch, as a
    :class:`~yoloparity.benchmarking.measure.BenchReport`; ``options`` are
    :class:`~yoloparity.benchmarking.measure.BenchOptions` fields (``backends``, ``precisions``, ``batches`` …)."""

    return run_bench(model, BenchOptions(**options), log=log, progress=progress)

"""Ray Data: the adapter (:class:`RayPredictor`) and ``predict --engine ray``.

:class:`RayPredictor` is a callable class for ``Dataset.map_batches``: Ray starts it once per actor
(the model loads once there) and hands it batches of a ``file`` column; it returns, per image, the
JSON Lines row ``predict --save-jsonl`` writes (``row``), plus ``num_detections``, ``error`` and the
actor's stage times. Ray Data cuts and re-cuts batches as it likes; that cannot change a detection,
because every image is letterboxed on its own and batched only with images of its own shape::

    import ray
    from yoloparity.predicting.ray_engine import RayPredictor

    ds = ray.data.from_items([{"file": p} for p in paths])
    ds = ds.map_batches(RayPredictor, fn_constructor_kwargs={"model": "yolov8n.pt", "conf": 0.25},
                        batch_size=16, concurrency=4, num_cpus=2)
    ds.write_parquet("detections/")        # or iterate ds.iter_rows() for row["row"]

:func:`predict_ray` runs it on a local cluster it starts (or an existing one, ``address``) with
``preserve_order``, and streams the rows into the same outputs as the torch.distributed engine.
Fault tolerance is Ray's (a failed actor task is retried by Ray Data); there is no ``--resume``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from ..data.sources import SourceItem, resolve_source
from ..errors import BackendUnavailableError, YoloParityError
from ..io.detections import result_row
from ..io.jsonl import MergedOutputs, ShardCounts, dumps_row
from ..process_settings import environ_default, environ_restored, logger_levels
from ..settings import InferenceSettings, LoadOptions
from .sharded import add_counts, build_predictor, run_about, settings_reference
from .summary import PredictSummary, run_summary

STAGES = ("decode", "letterbox", "inference", "nms", "wait")


def _import_ray():
    try:
        with environ_restored():  # importing ray sets RAY_CLIENT_MODE
            import ray
            import ray.data  # noqa: F401  (ray without its data extra has no ray.data)
    except ImportError as exc:
        raise BackendUnavailableError(None, f"--engine ray needs Ray Data: pip install 'yoloparity[ray]' ({exc})") from None
    return ray


class RayPredictor:
    """One actor's model: ``__call__({"file": [...]}) -> {"file", "row", "num_detections", "error", "<stage>_ms"}``,
    loaded with the run's :class:`~yoloparity.settings.LoadOptions` and predicting with its
    :class:`~yoloparity.settings.InferenceSettings`, both as the driver made them. ``sources`` name the run's inputs
    for the reference command of the summary."""

    def __init__(self, model: str, load: LoadOptions, settings: InferenceSettings, sources: Sequence[str] = ()):
        from ..yolo_model import load_model

        self.model = load_model(model, options=load)
        self.predictor, self.notes = build_predictor(self.model, settings)
        self.about = json.dumps(run_about(self.model, load.device, settings,
                                          settings_reference(self.model.spec, model, sources, settings)))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        files = [str(f) for f in batch["file"]]
        rows, counts, errors, failed = [], [], [], []
        for result in self.predictor.run([SourceItem(f) for f in files]):
            rows.append(dumps_row(result_row(result)))
            counts.append(len(result.detections) if result.ok else 0)
            errors.append(result.error or "")
            failed.append(result.failed)
        times = self.predictor.times
        out = {"file": np.array(files, dtype=object), "row": np.array(rows, dtype=object),
               "num_detections": np.array(counts, np.int64), "error": np.array(errors, dtype=object),
               "failed": np.array(failed, bool), "ray_batch": np.full(len(files), len(files), np.int64),
               # what the predictor had to change (a static file forcing --square …): the driver says it once
               "notes": np.full(len(files), json.dumps(self.notes), dtype=object),
               "about": np.full(len(files), self.about, dtype=object)}
        for stage in STAGES:  # the batch's stage time, shared out over its images (the summary adds them up)
            out[f"{stage}_ms"] = np.full(len(files), 1000.0 * getattr(times, stage) / max(len(files), 1))
        return out


@contextmanager
def ray_session(ray, address: str | None) -> Iterator[None]:
    """Ray started for the block (joined when the caller already started it) with ordered rows and no progress bars
    of its own; its environment variable, loggers and global ``DataContext`` are put back on the way out."""
    started_here = not ray.is_initialized()
    context = ray.data.DataContext.get_current()
    before = (context.execution_options.preserve_order, context.enable_progress_bars)
    with ExitStack() as stack:
        stack.enter_context(environ_restored())  # ray.init sets variables of its own (PYTHONBREAKPOINT, RAY_*)
        # the core worker's notes are not the user's business
        stack.enter_context(environ_default("RAY_BACKEND_LOG_LEVEL", "fatal"))
        # before ray.init, which sets the "ray" logger's level itself: the levels found here are the ones put back
        stack.enter_context(logger_levels(("ray", "ray.data"), logging.ERROR))
        if started_here:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                     configure_logging=True)
            stack.callback(ray.shutdown)
        context.execution_options.preserve_order = True  # rows come back in input order, whatever the actors do
        context.enable_progress_bars = False  # ours counts images over all actors
        try:
            yield
        finally:
            context.execution_options.preserve_order, context.enable_progress_bars = before


def predict_ray(model: str, sources: Sequence[str], settings: InferenceSettings, load: LoadOptions, *,
                items: list | None = None, actors: int = 2, address: str | None = None, save_jsonl: str | None = None,
                save_json: str | None = None, progress: Callable[[int], None] | None = None) -> PredictSummary:
    """``predict`` on Ray Data with ``actors`` model replicas; the same rows, in input order, as one process.
    ``items``: ``sources`` already resolved, when the caller has them."""
    ray = _import_ray()
    items = items if items is not None else resolve_source(list(sources))
    video = next((item.path for item in items if item.video is not None), None)
    if video:
        raise YoloParityError(video, "--engine ray reads image files (each row is loaded on its own); give videos to "
                              "the torch-distributed engine")
    start_time = time.perf_counter()
    with ray_session(ray, address):
        cpus = int(ray.cluster_resources().get("CPU", os.cpu_count() or 1))
        per_actor = load.threads or max(1, cpus // actors)
        reserved = load.threads or cpus / actors  # fractional when actors outnumber CPUs: every actor still gets scheduled
        kwargs = {"model": model, "load": load.replace(threads=per_actor), "settings": settings, "sources": tuple(sources)}
        dataset = ray.data.from_items([{"file": item.path} for item in items])
        dataset = dataset.map_batches(RayPredictor, fn_constructor_kwargs=kwargs,
                                      batch_size=settings.batch, compute=ray.data.ActorPoolStrategy(size=actors),
                                      num_cpus=reserved, batch_format="numpy")
        outputs = MergedOutputs(save_jsonl, save_json)
        try:
            streamed = _stream_rows(dataset, outputs, progress)
            total = add_counts([streamed.counts.to_dict()], len(items), None)  # no output file if nothing was read
        except BaseException:
            outputs.close(ok=False)
            raise
    outputs.close()
    times = {"ms_per_image": {k: round(v / max(streamed.counts.images, 1), 3) for k, v in streamed.stage_ms.items()}}
    return run_summary(
        total, time.perf_counter() - start_time, times, streamed.about,
        merge_s=None,  # no merge step: the driver streams the rows into the outputs as Ray returns them
        processes=actors, workers_are="Ray actors", engine="ray",
        ray_batch_sizes={str(k): v // k for k, v in sorted(streamed.batch_sizes.items())},  # batch size: how many batches
        notes=list(streamed.notes), jsonl=save_jsonl, json=save_json, run_dir=None)


@dataclass
class _Streamed:
    """What the driver adds up while Ray returns the rows."""

    counts: ShardCounts = field(default_factory=ShardCounts)
    batch_sizes: Counter = field(default_factory=Counter)
    stage_ms: dict = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    notes: dict = field(default_factory=dict)  # the actors' predictor notes, in first-seen order
    about: dict = field(default_factory=dict)  # what the actors say of the run (model, precision, head, reference …)


def _stream_rows(dataset, outputs: MergedOutputs, progress: Callable[[int], None] | None) -> _Streamed:
    streamed = _Streamed()
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        rows = [str(r) for r in batch["row"]]
        outputs.add([("".join(rows)).encode()])
        for row in rows:
            streamed.counts.add(json.loads(row))
        for stage in STAGES:
            streamed.stage_ms[stage] += float(np.sum(batch[f"{stage}_ms"]))
        streamed.batch_sizes.update(int(b) for b in batch["ray_batch"])
        for notes in batch["notes"]:
            streamed.notes.update(dict.fromkeys(json.loads(str(notes))))
        if not streamed.about and len(batch["about"]):
            streamed.about = json.loads(str(batch["about"][0]))
        if progress:
            progress(len(rows))
    return streamed

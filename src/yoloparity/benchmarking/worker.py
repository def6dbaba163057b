"""One benchmark configuration, run in its own process.

Why a process per configuration: peak resident memory is only meaningful per process, runtimes
keep thread pools and arenas alive after use (the second configuration in one process would be
measured in the first one's memory and threads), and a configuration that crashes its runtime
is reported as failed instead of ending the whole benchmark.

Reads a JSON job on stdin, prints one JSON result line on stdout.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time

from ..backends.registry import backend_info
from ..settings import InferenceSettings


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "spread": (max(values) - min(values)) / 2}


def run_job(job: dict) -> dict:
    """Time one configuration: load, warm up, repeat, and (with data) measure its mAP; peak memory is this
    process's."""
    from ..yolo_model import load_model

    options = {"threads": job["threads"]}
    if backend_info(job["backend"]).takes_precision(job["precision"]):  # a setting (torch fp16, OpenVINO's f16 hint …);
        options["precision"] = job["precision"]  # otherwise the file itself is fp16 or int8 and runs as saved
    start = time.perf_counter()
    with load_model(job["model_file"], backend=job["backend"], device=job["device"], **options) as model:
        load_s = time.perf_counter() - start
        result = _time_model(model, job)
        if result["status"] == "ok":
            result["load_s"] = load_s
            if job.get("data"):
                result.update(_model_map(model, job))
    if result["status"] != "ok":
        return result
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if job["device"].startswith("cuda"):
        import torch

        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20 if torch.cuda.is_available() else None
    return result


def timed_settings(model, job: dict) -> InferenceSettings:
    """The settings every configuration is timed at: the same square input, as the model resolves it (a static
    file: its own size), the job's batch, the predictors' thresholds."""
    return model.resolve(InferenceSettings(imgsz=job["imgsz"], mode="square", batch=job["batch"]))[0]


def predict_timed(model, job: dict, settings: InferenceSettings) -> list:
    """One timed pass: the job's images predicted at ``settings`` (the results; the stage times are the model's)."""
    return model.predict(job["images"], settings)


def _time_model(model, job: dict) -> dict:
    """Images per second (median and spread over the repeats) and the stage split, on a square input."""
    settings = timed_settings(model, job)
    if settings.batch != job["batch"]:  # a row says the batch it measured, never another
        return {"status": "skipped", "reason": f"the model file has a static batch of {settings.batch}"}
    rates, stages = [], {"decode": [], "letterbox": [], "inference": [], "nms": []}
    for i in range(job["warmup"] + job["repeats"]):
        predict_timed(model, job, settings)
        if i < job["warmup"]:
            continue
        times = model.last_times.to_dict()
        rates.append(times["images_per_s"])
        for k in stages:
            stages[k].append(times["ms_per_image"][k])
    return {"status": "ok", "images_per_s": _spread(rates), "ms_per_image": _spread([1000.0 / r for r in rates]),
            "stages_ms": {k: statistics.median(v) for k, v in stages.items()}, "mode": settings.mode,
            "imgsz": settings.square_size}


def _model_map(model, job: dict) -> dict:
    """mAP50-95 and mAP50 of this configuration on the labelled images (validation settings at its batch)."""
    from ..data.datasets import load_dataset
    from ..evaluate.validator import ValOptions, predict_and_score

    dataset = load_dataset(job["data"])
    if job.get("val_images"):
        dataset = dataset.subset(sorted(dataset.images, key=lambda e: e.id)[: job["val_images"]])
    score = predict_and_score(model, dataset, ValOptions(imgsz=job["imgsz"], batch=job["batch"]))
    # the COCO rows go back too: bench's recommendation scores them per image for the drop's interval
    return {"map50_95": score.metrics.mAP50_95, "map50": score.metrics.mAP50, "val_images": len(dataset.images),
            "coco_results": score.results}


def main() -> int:
    """Entry point of the worker process: a JSON job on stdin, one JSON result line on stdout."""
    job = json.loads(sys.stdin.read())
    try:
        result = run_job(job)
    except Exception as exc:  # reported as this configuration's failure, with its message
        result = {"status": "failed", "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

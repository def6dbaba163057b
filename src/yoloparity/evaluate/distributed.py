"""Sharded validation: a :class:`ValJob` in the per-rank loop (:mod:`yoloparity.rank_loop`), run by
:mod:`yoloparity.sharding` (one process, ``--workers N`` or torchrun).

Each rank validates its contiguous, unpadded shard of the image list sorted by name and writes one JSON Lines row
per image (its dataset id, detections and letterbox, or why it was skipped) in the shard format predict uses. Rank 0
gathers every rank's rows over the gloo group, checks the image ids are exactly the dataset's, each once, and
evaluates once. Finished shards stay, an interrupted one continues after its last whole row, and
``--resume DIR`` reuses them.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterable

from ..data.datasets import check_model_classes, load_dataset
from ..io.jsonl import lines_of
from ..rank_loop import Prepared, run_rank
from ..settings import LoadOptions
from ..sharding import run_sharded
from .validator import ImageRecord, ValOptions, ValReport, build_report, predict_records

# what the rows do not depend on: a resumed shard may change these
_NOT_IN_FINGERPRINT = ("batch", "decode_threads", "evaluator", "metric")


@dataclass(frozen=True)
class ValJob:
    """Everything a worker needs; picklable, so the launcher can hand it to spawned processes. The per-rank loop
    runs it: :meth:`prepare`, :meth:`rows` and, on rank 0, :meth:`finish`."""

    model: str
    data: str
    options: ValOptions
    run_dir: str
    load: LoadOptions = LoadOptions()
    split: str = "val"
    annotations: str | None = None
    gt_from_labels: bool = False
    resume: bool = False
    timeout: float = 600.0
    rows_to_rank0 = True  # rank 0 evaluates every rank's predictions

    def work(self, progress: Callable[[int], None] | None = None) -> ValReport | None:
        """This process's part of the run (the per-rank loop)."""
        return run_rank(self, progress)

    def prepare(self, model) -> Prepared:
        """The dataset's images (sorted by name) and the settings this backend can run, with a note for each change."""
        dataset = load_dataset(self.data, self.split, self.annotations, model.spec.names, self.options.strict,
                               self.gt_from_labels)
        warning = check_model_classes(dataset, model.spec.names, self.data)
        options, notes = model.resolve(self.options)
        notes = notes + ([warning] if warning else [])
        settings = {k: v for k, v in options.to_dict().items() if k not in _NOT_IN_FINGERPRINT}
        return Prepared(dataset.images, [e.path for e in dataset.images], settings, notes,
                        {"dataset": dataset, "options": options})

    def rows(self, model, prepared: Prepared, inputs: list, on_image: Callable[[int], None]):
        """One row per dataset image: its id, detections (original pixels) and letterbox, or why it was skipped."""
        predictor = model.predictor(prepared.state["options"])
        for row in predict_records(predictor, inputs, on_image):
            yield asdict(row)
        prepared.state["times"] = predictor.times.to_dict()

    def finish(self, model, prepared: Prepared, summaries: list[dict], chunks: Callable[[int], Iterable[bytes]],
               wall_start: float) -> ValReport:
        """Every rank's rows read back in rank order, checked complete and evaluated once."""
        records, skipped = [], []
        for summary in summaries:
            for line in lines_of(chunks(summary["rank"])):
                row = json.loads(line)
                if "error" in row:
                    skipped.append(row["error"])
                else:
                    records.append(ImageRecord(**row))
        notes = list(dict.fromkeys(n for s in summaries for n in s["notes"]))
        return build_report(records, skipped, [s["times"] for s in summaries], prepared.state["dataset"],
                            prepared.state["options"], notes, model, len(summaries), time.perf_counter() - wall_start)


def run_worker(job: ValJob, progress: Callable[[int], None] | None = None) -> ValReport | None:
    """Validate this process's shard; rank 0 returns the report of the whole run, other ranks None."""
    return run_rank(job, progress)


def validate(job: ValJob, workers: int = 1, progress: Callable[[int], None] | None = None) -> ValReport | None:
    """Run validation one way or another; None on ranks other than 0 under torchrun."""
    return run_sharded(job, workers, progress)

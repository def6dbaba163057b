"""Per-image results as JSON Lines: streamed as they arrive, resumable after a kill, merged in input order.

Why JSON Lines and not Parquet: a predict run over millions of images must write as it goes and
survive being killed. A JSON Lines file is valid after every line, so a killed worker leaves all
its finished rows readable and at most one torn line, which resume cuts off; a Parquet file is
only readable once its footer is written at close, so a killed writer loses the whole row group
or file. Lines also merge by plain byte copy in rank order (no decoding, no schema negotiation),
need nothing beyond the standard library on the worker, and float32 values written by ``repr``
read back exactly. Users who want Parquet convert the merged file in one line
(``pyarrow.json.read_json``), or use the Ray adapter, whose datasets write Parquet natively.

One row per input, in input order: predict writes ``{"file", "width", "height", "detections": [...]}`` (the
objects ``--save-json`` lists), val ``{"image_id", "file", "boxes", "scores", "class_ids", "letterbox"}``; both
write ``{"file", "error", "stage"}`` for an input that could not be read (``stage`` "input": skipped) or that the
runtime failed on (``stage`` "inference": failed).

A worker writes ``shard-RRR-of-WWW.jsonl.partial`` and renames it to ``shard-RRR-of-WWW.jsonl``
when its shard is done; ``shard-RRR-of-WWW.meta.json`` holds the fingerprint of what the rows
depend on (model, settings, the shard's inputs) and, at the end, the shard's counts and times.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from contextlib import ExitStack
from typing import IO, Iterable, Iterator

from .atomic import atomic_path, write_json

FLUSH_ROWS = 64
FLUSH_SECONDS = 1.0


def dumps_row(row: dict) -> str:
    """One JSON Lines row (compact, key order kept, newline-terminated)."""
    return json.dumps(row, separators=(",", ":")) + "\n"


class ShardCounts:
    """What a shard's rows add up to: images predicted, skipped and failed (each named), detections per class."""

    def __init__(self) -> None:
        self.images = 0
        self.detections = 0
        self.skipped: list[str] = []
        self.failed: list[str] = []
        self.per_class: Counter[str] = Counter()

    def add(self, row: dict) -> None:
        """Count one row: an image with its detections per class, or a skipped or failed input."""
        if "error" in row:
            (self.failed if row.get("stage") == "inference" else self.skipped).append(row["error"])
            return
        self.images += 1
        if "detections" in row:  # predict rows name each detection's class
            self.per_class.update(d["class_name"] for d in row["detections"])
            self.detections += len(row["detections"])
        else:  # val rows carry class ids only (the names are the model's, not the shard's)
            self.detections += len(row.get("class_ids", ()))

    def to_dict(self) -> dict:
        """The counts as JSON values."""
        return {"images": self.images, "skipped": list(self.skipped), "failed": list(self.failed), "detections": self.detections,
                "per_class": dict(self.per_class)}


class ShardWriter:
    """One rank's rows: appended to the ``.partial`` file as they come, renamed into place when the shard is done."""

    def __init__(self, run_dir: str, rank: int, world: int, fingerprint: str):
        stem = os.path.join(run_dir, f"shard-{rank:03d}-of-{world:03d}")
        self.path, self.partial, self.meta_path = stem + ".jsonl", stem + ".jsonl.partial", stem + ".meta.json"
        self.fingerprint = fingerprint
        self.counts = ShardCounts()
        self._fh: IO[str] | None = None
        self._unflushed, self._flushed_at = 0, time.monotonic()

    def _meta(self) -> dict | None:
        try:
            with open(self.meta_path) as fh:
                meta = json.load(fh)
        except (OSError, json.JSONDecodeError):
            return None
        return meta if meta.get("fingerprint") == self.fingerprint else None

    def finished(self) -> dict | None:
        """The summary of this shard when an earlier run finished it with the same fingerprint."""
        meta = self._meta()
        if meta and meta.get("finished") and os.path.exists(self.path):
            return meta
        return None

    def open(self, files: list[str], resume: bool) -> int:
        """Start writing; with ``resume``, keep the rows of an interrupted run that continue ``files`` in order
        (a torn last line is cut off) and return how many there are."""
        kept = self._recover(files) if resume and self._meta() is not None and os.path.exists(self.partial) else None
        if kept is None:
            write_json(self.meta_path, {"fingerprint": self.fingerprint, "finished": False})
            self._fh = open(self.partial, "w", encoding="utf-8")
            return 0
        self._fh = open(self.partial, "a", encoding="utf-8")
        return kept

    def _recover(self, files: list[str]) -> int:
        good_bytes, kept = 0, 0
        with open(self.partial, "rb") as fh:
            for line in fh:
                if not line.endswith(b"\n") or kept >= len(files):
                    break
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    break
                if row.get("file") != files[kept]:
                    break
                self.counts.add(row)
                good_bytes += len(line)
                kept += 1
        with open(self.partial, "r+b") as fh:
            fh.truncate(good_bytes)
        return kept

    def write(self, row: dict) -> None:
        """Append one row; flushed in blocks so a killed rank leaves whole rows only."""
        self._fh.write(dumps_row(row))
        self.counts.add(row)
        self._unflushed += 1
        now = time.monotonic()
        if self._unflushed >= FLUSH_ROWS or now - self._flushed_at >= FLUSH_SECONDS:
            self._fh.flush()
            self._unflushed, self._flushed_at = 0, now

    def finish(self, times: dict) -> dict:
        """Close, record the summary, rename into place (in that order: a kill in between is resumed from the rows)."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        summary = {"fingerprint": self.fingerprint, "finished": True, **self.counts.to_dict(), "times": times}
        write_json(self.meta_path, summary)
        os.replace(self.partial, self.path)
        return summary

    def close(self) -> None:
        """Close the rows file without finishing the shard (after an error: the rows written so far stay in the
        ``.partial`` file, for ``--resume``)."""
        if self._fh is not None and not self._fh.closed:
            self._fh.close()


def read_chunks(path: str, size: int = 1 << 20) -> Iterator[bytes]:
    """A file's bytes in chunks of ``size`` (merging shards without holding one in memory)."""
    with open(path, "rb") as fh:
        while chunk := fh.read(size):
            yield chunk


def lines_of(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Whole lines from byte chunks cut anywhere."""
    rest = b""
    for chunk in chunks:
        rest += chunk
        *lines, rest = rest.split(b"\n")
        for line in lines:
            yield line + b"\n"
    if rest:
        yield rest


class MergedOutputs:
    """Rank 0's merge: shard rows in rank order into the requested files, streamed (memory stays flat).

    ``jsonl``: every row as written (a byte copy); ``json``: the rows of the images that were read, as one JSON
    array formatted exactly as ``json.dump(rows, indent=1)`` (what ``--save-json`` has always written)."""

    def __init__(self, jsonl: str | None, json_path: str | None):
        self.targets = [t for t in (jsonl, json_path) if t]
        self._files = ExitStack()  # each output: a temporary file, renamed into place when the stack closes cleanly
        self._jsonl = self._open(jsonl, "wb") if jsonl else None
        self._json = self._open(json_path, "w") if json_path else None
        self.rows, self._json_rows = 0, 0

    def _open(self, path: str, mode: str):
        tmp = self._files.enter_context(atomic_path(path))
        return self._files.enter_context(open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})))

    def add(self, chunks: Iterable[bytes]) -> None:
        """Append shard bytes to the outputs: the JSON Lines copied as bytes, the JSON array written row by row."""
        if self._json is None:  # a byte copy, or only the count when no file was asked for
            for chunk in chunks:
                if self._jsonl is not None:
                    self._jsonl.write(chunk)
                self.rows += chunk.count(b"\n")
            return
        for line in lines_of(chunks):
            self.rows += 1
            if self._jsonl is not None:
                self._jsonl.write(line)
            row = json.loads(line)
            if "error" in row:
                continue
            text = json.dumps(row, indent=1).replace("\n", "\n ")
            self._json.write(("[\n " if self._json_rows == 0 else ",\n ") + text)
            self._json_rows += 1

    def close(self, ok: bool = True) -> None:
        """Put the files in place (``ok``) or remove them (an error: no half-merged output is left)."""
        if self._json is not None and ok:
            self._json.write("\n]" if self._json_rows else "[]")
        if ok:
            self._files.close()
        else:
            failure = RuntimeError("merge failed")
            self._files.__exit__(type(failure), failure, None)

"""Shape buckets: images are batched only with images of the same input shape (parity contract 1).

One implementation for the streaming predictor (:class:`ShapeBuckets`: items arrive one by one, a full
bucket is handed back to run) and for everything that holds a list of images at once
(:func:`shape_batches`: the audit's chunks, the tests).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, Hashable, Sequence, TypeVar

T = TypeVar("T")


class ShapeBuckets(Generic[T]):
    """Items grouped by shape in order of first appearance; a bucket is returned as soon as it holds ``batch``."""

    def __init__(self, batch: int):
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.batch = batch
        self._buckets: "OrderedDict[Hashable, list[T]]" = OrderedDict()

    def add(self, shape: Hashable, item: T) -> list[T] | None:
        """Add ``item``; the full batch of its shape when this filled it, else None."""
        bucket = self._buckets.setdefault(shape, [])
        bucket.append(item)
        return self._buckets.pop(shape) if len(bucket) >= self.batch else None

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets.values())

    def pop_oldest(self) -> list[T]:
        """The bucket opened first (to bound memory when many shapes are open at once)."""
        return self._buckets.pop(next(iter(self._buckets)))

    def drain(self) -> list[list[T]]:
        """Every partial bucket, oldest first, and empty the buckets."""
        rest = list(self._buckets.values())
        self._buckets.clear()
        return rest


def shape_batches(shapes: Sequence[Hashable], batch: int) -> list[list[int]]:
    """Indices of ``shapes`` in batches of at most ``batch`` that share a shape, as the predictor forms them."""
    buckets: ShapeBuckets[int] = ShapeBuckets(batch)
    batches = []
    for index, shape in enumerate(shapes):
        full = buckets.add(shape, index)
        if full:
            batches.append(full)
    return batches + buckets.drain()

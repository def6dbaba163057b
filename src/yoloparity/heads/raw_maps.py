"""The head's last step on the host: per-level raw maps → the raw head tensor every head format reads.

Why: a full-integer model has one int8 scale per tensor. When a graph joins box pixels (0…640) and 0…1 scores in
one output, a single scale cannot serve both, and the low-score detections are lost (YOLO26n lost 12 points that
way). A graph that ends at the head's last convolutions gives each map — box distribution, class logits, per level,
per branch — its own scale; the decode (DFL, sigmoid, grid and anchors, strides) then runs here in float32, the same
arithmetic as :class:`~yoloparity.models.head_layers.DetectV8` / ``DetectV5``, and the result goes through the
head-format code every backend shares.

A file says it ends at raw maps with a :class:`MapLayout` in its metadata (``yoloparity.raw_maps``): which decode,
the strides and grid sizes, the class count, the DFL bins, corner or centre boxes, YOLOv5's anchors in pixels, and
the order of the maps (per level: box then class logits for anchor-free heads; one map per level for YOLOv5).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

RAW_MAPS_KEY = "yoloparity.raw_maps"
ANCHOR_FREE, ANCHORS = "anchor-free", "anchors"


@dataclass(frozen=True)
class MapLayout:
    """What a raw-maps file outputs and how to decode it (see the module docstring)."""
    kind: str  # ANCHOR_FREE (YOLOv8/11, YOLOv10, YOLO26) or ANCHORS (YOLOv5)
    strides: tuple[int, ...]
    sizes: tuple[tuple[int, int], ...]  # (h, w) of each level's grid
    nc: int
    reg_max: int = 1  # DFL bins per box side (anchor-free; 1: the distances themselves, as YOLO26)
    xyxy: bool = False  # anchor-free boxes as corners (the one-to-one head's top-k reads them) instead of centres
    anchors: tuple[tuple[tuple[float, float], ...], ...] = ()  # YOLOv5: per level, each anchor's (w, h) in pixels

    def __post_init__(self) -> None:
        """A layout that cannot decode is refused here, naming what is wrong."""
        if self.kind not in (ANCHOR_FREE, ANCHORS):
            raise ValueError(f"raw maps: kind must be {ANCHOR_FREE} or {ANCHORS}, got {self.kind!r}")
        if len(self.strides) != len(self.sizes) or not self.strides:
            raise ValueError(f"raw maps: {len(self.strides)} strides for {len(self.sizes)} grid sizes")
        if self.kind == ANCHORS and len(self.anchors) != len(self.strides):
            raise ValueError(f"raw maps: YOLOv5 decode needs anchors for each of {len(self.strides)} levels")

    @property
    def channels(self) -> list[int]:
        """Each map's channel count, in the file's map order."""
        if self.kind == ANCHORS:
            return [len(a) * (5 + self.nc) for a in self.anchors]
        return [c for _ in self.strides for c in (4 * self.reg_max, self.nc)]

    @property
    def map_sizes(self) -> list[tuple[int, int]]:
        """Each map's (h, w), in the file's map order."""
        return list(self.sizes) if self.kind == ANCHORS else [hw for hw in self.sizes for _ in range(2)]

    def head_shape(self, batch: int = 1) -> tuple[int, int, int]:
        """The shape of the raw head tensor :func:`decode_maps` returns."""
        cells = sum(h * w for h, w in self.sizes)
        if self.kind == ANCHORS:
            return (batch, cells * len(self.anchors[0]), 5 + self.nc)
        return (batch, 4 + self.nc, cells)

    def to_json(self) -> str:
        """The layout as the metadata string files carry."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "MapLayout":
        """A layout from its metadata string."""
        data = json.loads(text)
        return cls(kind=data["kind"], strides=tuple(int(s) for s in data["strides"]),
                   sizes=tuple((int(h), int(w)) for h, w in data["sizes"]), nc=int(data["nc"]),
                   reg_max=int(data.get("reg_max", 1)), xyxy=bool(data.get("xyxy", False)),
                   anchors=tuple(tuple((float(w), float(h)) for w, h in level) for level in data.get("anchors", ())))


class QuantizedMap:
    """One int8 map as the runtime gives it, (N, h, w, C) NHWC, with its (scale, zero point). Its 256 possible values
    make every element-wise step a table lookup: the sigmoid or exp of each value computed once, in float32, from the
    same dequantized value the float path would compute — the same numbers, without 672,000 exps per image."""

    def __init__(self, q: np.ndarray, scale: float, zero_point: int):
        if q.dtype != np.int8:
            raise ValueError(f"raw maps: a quantized map must be int8, got {q.dtype}")
        self.q, self.scale, self.zero_point = q, float(scale), int(zero_point)
        self.values = (np.arange(-128, 128, dtype=np.float32) - np.float32(zero_point)) * np.float32(scale)

    def gathered(self, table: np.ndarray) -> np.ndarray:
        """``table`` (256 float32, indexed by value + 128) applied to every element, in the map's own (N, h, w, C)."""
        return table[self.q.view(np.uint8) ^ 0x80]

    def looked_up(self, table: np.ndarray) -> np.ndarray:
        """:meth:`gathered`, as (N, C, h, w)."""
        return self.gathered(table).transpose(0, 3, 1, 2)

    def dequantized(self) -> np.ndarray:
        """The map's float values, (N, C, h, w)."""
        return self.looked_up(self.values)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))).astype(np.float32)  # exp stays finite in float32


def _distances(box, layout: MapLayout, cells: int) -> np.ndarray:
    """(N, 4, cells) box side distances in grid units: the DFL expectation over ``reg_max`` bins, or the map itself."""
    quantized = isinstance(box, QuantizedMap)
    if layout.reg_max == 1:
        values = box.dequantized() if quantized else box
        return values.reshape(values.shape[0], 4, cells)
    bins = np.arange(layout.reg_max, dtype=np.float32)[:, None]
    if quantized and float(box.values.max() - box.values.min()) > 80:  # exp(-80) is near float32's floor: no table
        box, quantized = box.dequantized(), False
    if quantized:  # softmax from a table of exp(v - the map's largest value): every entry in (0, 1]
        e = box.looked_up(np.exp(box.values - box.values.max()).astype(np.float32))
        e = e.reshape(e.shape[0], 4, layout.reg_max, cells)
    else:
        dist = box.reshape(box.shape[0], 4, layout.reg_max, cells)
        e = np.exp(dist - dist.max(axis=2, keepdims=True))
    return (e / e.sum(axis=2, keepdims=True) * bins).sum(axis=2)


def _write_scores(cls, out: np.ndarray) -> None:
    """Sigmoid class scores into ``out`` (N, nc, cells): an int8 map's through its table, gathered in its own
    (cells, nc) order and written transposed in one copy."""
    if isinstance(cls, QuantizedMap):
        out[:] = cls.gathered(_sigmoid(cls.values)).reshape(cls.q.shape[0], -1, out.shape[1]).transpose(0, 2, 1)
    else:
        out[:] = _sigmoid(cls).reshape(out.shape)


def _anchor_free(maps: list, layout: MapLayout) -> np.ndarray:
    """DetectV8's decode: DFL expectation (or the distances themselves), anchor centres at cell + 0.5, strides."""
    first = maps[0]
    n = first.q.shape[0] if isinstance(first, QuantizedMap) else first.shape[0]
    out = np.empty(layout.head_shape(n), np.float32)
    start = 0
    for i, ((h, w), stride) in enumerate(zip(layout.sizes, layout.strides)):
        box, cls = maps[2 * i], maps[2 * i + 1]  # (N, 4R, h, w), (N, nc, h, w)
        cells = slice(start, start + h * w)
        start += h * w
        dist = _distances(box, layout, h * w)
        sy, sx = np.meshgrid(np.arange(h, dtype=np.float32) + 0.5, np.arange(w, dtype=np.float32) + 0.5, indexing="ij")
        centre = np.stack((sx.reshape(-1), sy.reshape(-1)))[None]  # (1, 2, h*w)
        x1y1, x2y2 = centre - dist[:, :2], centre + dist[:, 2:]
        corners = np.concatenate((x1y1, x2y2) if layout.xyxy else ((x1y1 + x2y2) / 2, x2y2 - x1y1), axis=1)
        out[:, :4, cells] = corners * np.float32(stride)
        _write_scores(cls, out[:, 4:, cells])
    return out


def _anchor_based(maps: list, layout: MapLayout) -> np.ndarray:
    """DetectV5's decode: sigmoid, xy = (2s - 0.5 + cell) * stride, wh = (2s)^2 * anchor — each level's sigmoids
    written once, straight into its rows of the output, from the map's own channels-last order (a level's 255
    channels are 3 anchors x 85 values: NHWC is already (h, w, anchor, value)), then the box columns in place
    (YOLOv5n's int8 maps at 640: 6-8 ms, against 14-20 ms for a transpose, a reshape copy and two concatenations)."""
    no = 5 + layout.nc
    first = maps[0]
    n = first.q.shape[0] if isinstance(first, QuantizedMap) else first.shape[0]
    out = np.empty(layout.head_shape(n), np.float32)
    start = 0
    for x, (h, w), stride, anchors in zip(maps, layout.sizes, layout.strides, layout.anchors):
        na = len(anchors)
        s = x.gathered(_sigmoid(x.values)) if isinstance(x, QuantizedMap) else _sigmoid(x).transpose(0, 2, 3, 1)
        y = out[:, start:start + na * h * w].reshape(n, na, h, w, no)  # this level's rows of ``out``, a view
        start += na * h * w
        y[...] = s.reshape(n, h, w, na, no).transpose(0, 3, 1, 2, 4)
        yv, xv = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
        grid = np.stack((xv, yv), 2)[None, None] - np.float32(0.5)
        anchor_grid = np.asarray(anchors, np.float32).reshape(1, na, 1, 1, 2)
        y[..., 0:2] = (y[..., 0:2] * 2 + grid) * np.float32(stride)
        y[..., 2:4] = (y[..., 2:4] * 2) ** 2 * anchor_grid
    return out


def decode_maps(maps: list, layout: MapLayout) -> np.ndarray:
    """The raw head tensor of a batch from its raw maps, in the layout's map order: each (N, C, h, w) float32, or a
    :class:`QuantizedMap` (an int8 file's output as it comes, decoded through lookup tables)."""
    expected = list(zip(layout.channels, layout.map_sizes))
    got = [(m.q.shape[3], tuple(m.q.shape[1:3])) if isinstance(m, QuantizedMap) else (m.shape[1], tuple(m.shape[2:]))
           for m in maps]
    if got != expected:
        raise ValueError(f"raw maps: expected (channels, (h, w)) {expected}, got {got}")
    return _anchor_based(maps, layout) if layout.kind == ANCHORS else _anchor_free(maps, layout)

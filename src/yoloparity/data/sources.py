"""Where images come from: a file, a folder, a glob, a list file, a list of paths, NumPy arrays, a video.

:func:`resolve_source` turns what the user gave into a list of :class:`SourceItem` in a
deterministic order (folders and globs sorted by name, list files in their line order) without
decoding anything; each item decodes itself when asked, so decoding can run in a thread pool.
Videos expand to one item per frame, read in order by a single reader. An item of an image file
holds only its path (a million of them fit in about 150 MB); :func:`take` cuts a shard out of the
list, positioning a video's reader at the shard's first frame.
"""

from __future__ import annotations

import glob
import os
import threading
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from ..errors import BadImageError, InputNotFoundError
from ..resources import ResourceError, check_image_pixels

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".dng", ".mpo", ".pfm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm", ".gif", ".ts")


LIST_SUFFIX = ".txt"  # a text file naming one image, folder, glob or video per line (how sets of millions are given)


class SourceItem:
    """One image to predict: a display name and how to get it as BGR uint8 (H, W, 3).

    Without a loader the item is the image file at ``path`` (read with :func:`read_image`); video
    frames carry their reader and index, so a shard can start mid-video (:func:`take`)."""

    __slots__ = ("path", "_load", "video", "frame")

    def __init__(self, path: str, load: Callable[[], np.ndarray] | None = None, video: "_VideoReader | None" = None,
                 frame: int = -1):
        self.path, self._load, self.video, self.frame = path, load, video, frame

    def load(self) -> np.ndarray:
        """The image as BGR uint8 (H, W, 3): decoded from the file, or the array or video frame it holds."""
        if self.video is not None:
            return self.video.frame(self.frame)
        return self._load() if self._load is not None else read_image(self.path)

    def __repr__(self) -> str:
        return f"SourceItem({self.path!r})"


def _check_complete(path: str, data: bytes) -> None:
    """Refuse truncated JPEG/PNG files that cv2 would otherwise decode into a gray-filled image."""
    if data[:3] == b"\xff\xd8\xff":
        if b"\xff\xd9" not in data[-1024:]:
            raise BadImageError(path, "truncated JPEG (no end-of-image marker)")
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        if b"IEND" not in data[-64:]:
            raise BadImageError(path, "truncated PNG (no IEND chunk)")


def read_image(path: str) -> np.ndarray:
    """Decode an image file as BGR uint8 (H, W, 3); raise :class:`BadImageError` naming the file."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError as exc:
        raise InputNotFoundError(path, "no such file") from exc
    except OSError as exc:
        raise BadImageError(path, f"cannot read ({exc.strerror})") from exc
    if not data:
        raise BadImageError(path, "empty file")
    _check_complete(path, data)
    try:
        check_image_pixels(path, data)
    except ResourceError as exc:
        raise BadImageError(path, exc.problem) from None  # one oversize image in a folder is skipped like a corrupt one
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:  # e.g. over OpenCV's own pixel limit in a format whose header we do not parse
        raise BadImageError(path, f"cannot be decoded ({str(exc).strip().splitlines()[-1][:160]})") from None
    if image is None:
        raise BadImageError(path, "not a decodable image (corrupt, or not an image file)")
    return image


def check_array(name: str, image: np.ndarray) -> np.ndarray:
    """An image array as the pipeline takes it (HxWx3 uint8 BGR, or HxW gray expanded), or an error naming it."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise BadImageError(name, f"expected a BGR uint8 array (H, W, 3), got {getattr(image, 'dtype', type(image))} {getattr(image, 'shape', '')}")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    elif image.shape[2] != 3:
        raise BadImageError(name, f"expected 3 channels, got {image.shape[2]}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise BadImageError(name, f"empty image of shape {image.shape}")
    return np.ascontiguousarray(image)


class _VideoReader:
    """Reads a video's frames strictly in order; items ask for frame k and wait their turn."""

    def __init__(self, path: str):
        self.path = path
        self.cap = cv2.VideoCapture(path)
        if not self.cap.isOpened():
            raise BadImageError(path, "cannot open video (corrupt, or a codec cv2 lacks)")
        self.count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.next_index = 0
        self.start = 0  # the first frame anyone will ask for (a shard that starts mid-video)
        self.cond = threading.Condition()

    def start_at(self, index: int) -> None:
        """The frames before ``index`` belong to another shard: they are read past (exactly, not seeked)."""
        with self.cond:
            self.start = index

    def frame(self, index: int) -> np.ndarray:
        with self.cond:
            while self.next_index < min(self.start, index):
                self.cap.grab()
                self.next_index += 1
            self.cond.wait_for(lambda: self.next_index == index)
            ok, image = self.cap.read()
            self.next_index += 1
            self.cond.notify_all()
        if not ok or image is None:
            raise BadImageError(f"{self.path}#frame={index}", "frame could not be decoded")
        return image


def _video_items(path: str) -> list[SourceItem]:
    reader = _VideoReader(path)
    if reader.count <= 0:
        raise BadImageError(path, "video reports no frames")
    return [SourceItem(f"{path}#frame={k}", video=reader, frame=k) for k in range(reader.count)]


def _file_items(path: str) -> list[SourceItem]:
    lower = path.lower()
    if lower.endswith(VIDEO_SUFFIXES):
        return _video_items(path)
    return [SourceItem(path)]


def _list_file_items(path: str) -> list[SourceItem]:
    """Each non-empty, non-comment line names a source; relative paths are relative to the list file."""
    base = os.path.dirname(os.path.abspath(path))
    items: list[SourceItem] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            entry = entry if os.path.isabs(entry) else os.path.join(base, entry)
            if os.path.isfile(entry) and not entry.lower().endswith(VIDEO_SUFFIXES + (LIST_SUFFIX,)):
                items.append(SourceItem(entry))  # the common case, without a stat per kind
            elif os.path.exists(entry) or any(ch in entry for ch in "*?["):
                items.extend(_expand_path(entry))
            else:  # kept: read_image names it and the run counts it as skipped, like a corrupt image
                items.append(SourceItem(entry))
    if not items:
        raise InputNotFoundError(path, "list file names no images")
    return items


def _expand_path(path: str) -> list[SourceItem]:
    if os.path.isdir(path):
        files = sorted(
            os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith(IMAGE_SUFFIXES + VIDEO_SUFFIXES)
        )
        if not files:
            raise InputNotFoundError(path, "folder holds no images or videos")
        return [item for f in files for item in _file_items(f)]
    if any(ch in path for ch in "*?["):
        files = sorted(f for f in glob.glob(path, recursive=True) if os.path.isfile(f))
        if not files:
            raise InputNotFoundError(path, "glob matches no files")
        return [item for f in files for item in _file_items(f)]
    if not os.path.exists(path):
        raise InputNotFoundError(path, "no such file or folder")
    if path.lower().endswith(LIST_SUFFIX):
        return _list_file_items(path)
    return _file_items(path)


def take(items: list[SourceItem], start: int, stop: int) -> list[SourceItem]:
    """``items[start:stop]`` for a shard (or a resumed one): a video cut at ``start`` is read from that frame."""
    shard = items[start:stop]
    if shard and shard[0].video is not None:
        shard[0].video.start_at(shard[0].frame)
    return shard


def resolve_source(source: str | os.PathLike | np.ndarray | Sequence) -> list[SourceItem]:
    """Turn a source into items in a deterministic order; raise if it names nothing usable."""
    if isinstance(source, np.ndarray):
        return [SourceItem("array0", (lambda a=source: check_array("array0", a)))]
    if isinstance(source, (str, os.PathLike)):
        return _expand_path(os.fspath(source))
    if isinstance(source, Iterable):
        items: list[SourceItem] = []
        for k, entry in enumerate(source):
            if isinstance(entry, np.ndarray):
                name = f"array{k}"
                items.append(SourceItem(name, (lambda a=entry, n=name: check_array(n, a))))
            else:
                items.extend(_expand_path(os.fspath(entry)))
        if not items:
            raise InputNotFoundError(None, "the source list is empty")
        return items
    raise InputNotFoundError(None, f"cannot read images from a {type(source).__name__}")


"""Official model names → a file on disk: the path as given, the assets folder, the cache, a download.

Official checkpoints (``yolov5n.pt`` … ``yolo11x.pt``) not found on disk are looked for in the
assets folder (``YOLOPARITY_ASSETS``, default ``../shared/assets``) and the cache folder
(``YOLOPARITY_CACHE``, default ``~/.cache/yoloparity``), then downloaded from the official release
with a progress bar. Without a network the error says where to put the file.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from typing import Callable

from ..errors import InputNotFoundError
from ..io.atomic import output_mode
from ..io.model_folder import model_in_folder

_SIZES = "nsmlx"
_V5_URL = "https://github.com/ultralytics/yolov5/releases/download/v7.0/{name}"
_ULTRA_URL = "https://github.com/ultralytics/assets/releases/download/v8.3.0/{name}"
OFFICIAL: dict[str, str] = {}
for _s in _SIZES:
    OFFICIAL[f"yolov5{_s}.pt"] = _V5_URL.format(name=f"yolov5{_s}.pt")
    OFFICIAL[f"yolov8{_s}.pt"] = _ULTRA_URL.format(name=f"yolov8{_s}.pt")
    OFFICIAL[f"yolo11{_s}.pt"] = _ULTRA_URL.format(name=f"yolo11{_s}.pt")


def assets_dir() -> str:
    """Where the shared test assets are (``YOLOPARITY_ASSETS``)."""
    return os.environ.get("YOLOPARITY_ASSETS", os.path.join("..", "shared", "assets"))


def cache_dir() -> str:
    """The cache folder for exports (``YOLOPARITY_CACHE``, else ~/.cache/yoloparity)."""
    return os.environ.get("YOLOPARITY_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "yoloparity"))


def download(url: str, dest: str, progress: Callable[[int, int], None] | None = None, timeout: float = 15.0) -> str:
    """Fetch ``url`` to ``dest`` atomically (a partial download never takes the final name)."""
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest) or ".", suffix=".part")
    bar = None
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, os.fdopen(fd, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            if progress is None:  # the default: a byte progress bar on stderr (tqdm shows it on a terminal only)
                from tqdm import tqdm

                bar = tqdm(total=total or None, unit="B", unit_scale=True, desc=f"downloading {os.path.basename(dest)}",
                           disable=None, file=sys.stderr)
                progress = lambda n, _total: bar.update(n)  # noqa: E731
            while True:
                chunk = response.read(1 << 16)
                if not chunk:
                    break
                out.write(chunk)
                progress(len(chunk), total)
        os.chmod(tmp, output_mode())  # mkstemp's 0600, made what any download would get
        shutil.move(tmp, dest)
    finally:
        if bar is not None:
            bar.close()
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest


def resolve_model_path(name: str, progress: Callable[[int, int], None] | None = None) -> str:
    """The file to load for ``name`` (a folder: the one model file in it, as an exporter's model folder holds it);
    raise :class:`InputNotFoundError` saying where to put it."""
    if os.path.isdir(name):
        return model_in_folder(name)
    if os.path.exists(name):
        return name
    base = os.path.basename(name)
    if base not in OFFICIAL:
        raise InputNotFoundError(name, "no such model file")
    for folder in (os.path.join(assets_dir(), "models"), cache_dir()):
        candidate = os.path.join(folder, base)
        if os.path.exists(candidate):
            return candidate
    dest = os.path.join(cache_dir(), base)
    try:
        return download(OFFICIAL[base], dest, progress)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InputNotFoundError(
            name, f"not on disk and the download from {OFFICIAL[base]} failed ({reason}); put the file at {dest} or pass its path"
        ) from exc

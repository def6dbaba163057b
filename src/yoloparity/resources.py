"""Resource guards: refuse up front what cannot fit in memory, with the estimate and the limit, in one line.

A run at ``--imgsz 100000`` used to grow until the kernel killed it (24 GB taken, exit 137), and a 1.5 MB
PNG that decodes to 40,000 x 40,000 pixels ended in a traceback from a decode thread. Both are user
input, so both are :class:`ResourceError` (exit 2) before any large allocation.

The inference estimate is a *lower bound*: ``batch x H x W x 64`` bytes. Measured here (peak RSS growth
of one torch forward pass, yolov5n and yolov8n at 640-1920): 100-155 bytes per input pixel; larger
models need more. A bound below the real need only refuses what surely cannot run.
"""

from __future__ import annotations

import os
import struct

from .errors import YoloParityError

BYTES_PER_INPUT_PIXEL = 64  # lower bound of inference memory per input pixel (measured 100-155 for n models)
DEFAULT_MAX_IMAGE_PIXELS = 1 << 28  # 268 Mpixel: 805 MB decoded; YOLOPARITY_MAX_IMAGE_PIXELS overrides


class ResourceError(YoloParityError):
    """A request (input size, batch, image) that would not fit in this machine's memory."""


def available_memory() -> int | None:
    """Bytes the process can still take: MemAvailable, capped by a cgroup v2 limit; None where unknown."""
    limits = []
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            text = fh.read().strip()
        if text.isdigit():
            with open("/sys/fs/cgroup/memory.current") as fh:
                limits.append(int(text) - int(fh.read().strip()))
    except OSError:
        pass
    return min(limits) if limits else None


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def check_inference_memory(batch: int, hw: tuple[int, int], what: str = "--imgsz/--batch") -> None:
    """Refuse a batch x H x W input whose inference surely exceeds the memory available."""
    h, w = hw
    need = batch * h * w * BYTES_PER_INPUT_PIXEL
    have = available_memory()
    if have is not None and need > have:
        raise ResourceError(None, f"{what}: batch {batch} at {h}x{w} needs at least {_gb(need)} for inference "
                                  f"({BYTES_PER_INPUT_PIXEL} B per input pixel), more than the {_gb(have)} available; "
                                  "use a smaller --imgsz or --batch")


def max_image_pixels() -> int:
    """The largest image (pixels) decoded before refusing it (``YOLOPARITY_MAX_IMAGE_PIXELS``)."""
    value = os.environ.get("YOLOPARITY_MAX_IMAGE_PIXELS")
    return int(value) if value and value.isdigit() else DEFAULT_MAX_IMAGE_PIXELS


def encoded_image_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a PNG, JPEG, BMP, GIF or WebP header, without decoding; None for other formats."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return h, w
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
                i += 1 if marker == 0xFF else 2
                continue
            length = struct.unpack(">H", data[i + 2 : i + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return h, w
            i += 2 + length
        return None
    if data[:2] == b"BM" and len(data) >= 26:
        w, h = struct.unpack("<ii", data[18:26])
        return abs(h), abs(w)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return h, w
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and data[12:16] == b"VP8X" and len(data) >= 30:
        w = 1 + int.from_bytes(data[24:27], "little")
        h = 1 + int.from_bytes(data[27:30], "little")
        return h, w
    return None


def check_image_pixels(path: str, data: bytes) -> None:
    """Refuse an image whose header promises more pixels than the limit, before decoding it."""
    size = encoded_image_size(data)
    limit = max_image_pixels()
    if size is not None and size[0] * size[1] > limit:
        h, w = size
        raise ResourceError(path, f"image is {w}x{h} ({h * w / 1e6:.0f} Mpixel, {_gb(3 * h * w)} decoded), over the "
                                  f"{limit / 1e6:.0f} Mpixel limit (YOLOPARITY_MAX_IMAGE_PIXELS)")

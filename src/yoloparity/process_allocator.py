"""The memory allocator of a yoloparity process: large buffers kept for reuse instead of handed back per image.

Why: every image passes through buffers of megabytes (a 640x640 input is 4.9 MB in float32, a batch of 16 is 79 MB,
each output 2.8 MB). glibc's malloc serves a block that large with a fresh ``mmap`` and unmaps it when freed (and
trims the top of its heaps), so the next image's buffer is new memory again, whose every page the kernel faults in
and zeroes. Measured over the 206 coco-val-mini images (yolov8n, 2 cores; BENCHMARKS.md "System time: the kernel
zeroing pages"): zeroing pages was 82 % of the system time, 1.1-4.4 of ~24 CPU seconds; with the thresholds below,
page faults fall by 35 % (ONNX Runtime) and 45 % (PyTorch), PyTorch runs take 4 % fewer CPU seconds and 6 % less wall
time (on ONNX Runtime the change is within the run-to-run noise of its system time); peak memory 2-12 % higher (the
heap keeps what it had at its peak).

Only our own processes are changed — the ``yoloparity`` command and the workers it starts — never a program that
imports the library (the allocator is the whole process's, and its thresholds cannot be read back to restore them).
Such a program can ask glibc for the same at its start: ``MALLOC_MMAP_THRESHOLD_=268435456
MALLOC_TRIM_THRESHOLD_=1073741824``.
"""

from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 256 << 20  # blocks below 256 MB come from the heap (a batch of 64 640x640 images: 315 MB)
TRIM_THRESHOLD = 1 << 30  # the heap's free top is handed back only above 1 GB


def keep_large_buffers() -> bool:
    """Tell glibc's malloc to serve large blocks from its heap and keep freed ones for reuse; whether it applied
    (False where the C library is not glibc: other allocators behave differently and are left alone)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))

"""No global side effects: thread counts, determinism switches and log levels come back as they were."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import yoloparity
from yoloparity.process_settings import deterministic_settings, logger_level, torch_threads


def test_torch_models_leave_the_callers_thread_count_alone(yolov5n_pt, assets):
    before = torch.get_num_threads()
    a = yoloparity.load_model(yolov5n_pt)
    b = yoloparity.load_model(yolov5n_pt)
    assert a.backend.threads == b.backend.threads == before  # each model's pool is its own size
    x = np.zeros((2, 3, 64, 64), np.float32)
    assert np.array_equal(a.raw(x), b.raw(x))
    assert torch.get_num_threads() == before


@pytest.mark.unit
def test_deterministic_settings_are_restored():
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
              torch.backends.cuda.matmul.allow_tf32)
    with deterministic_settings() as applied:
        assert torch.are_deterministic_algorithms_enabled() and applied["tf32"] == "off"
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
            torch.backends.cuda.matmul.allow_tf32) == before


def test_audit_deterministic_restores_the_process(capsys, yolov5n_pt, assets):
    from yoloparity.cli import main

    before = torch.are_deterministic_algorithms_enabled()
    main(["audit", yolov5n_pt, str(assets / "images" / "bus.jpg"), "--config", "batch=1", "--config", "batch=2",
          "--deterministic", "--quiet"])
    assert "deterministic settings: torch.use_deterministic_algorithms=True" in capsys.readouterr().out
    assert torch.are_deterministic_algorithms_enabled() == before


@pytest.mark.unit
def test_logger_level_and_threads_come_back():
    root = logging.getLogger()
    level = root.level
    with logger_level(None, logging.CRITICAL):
        assert root.level == logging.CRITICAL
    assert root.level == level
    threads = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == threads


def test_quantize_preprocessing_leaves_the_root_logger_alone(yolov5n_onnx, tmp_path):
    from yoloparity.quantization.onnx_qdq import prepare_float_model

    level = logging.getLogger().level
    prepare_float_model(yolov5n_onnx, str(tmp_path))
    assert logging.getLogger().level == level


_FAULTS_OF_A_SECOND_BUFFER = """
import ctypes, resource, sys
import numpy as np
# count 4 KB pages whatever the machine's transparent-huge-page mode: numpy asks for huge pages on large arrays,
# and with THP "always" the kernel uses them anyway (prctl PR_SET_THP_DISABLE = 41 turns that off for this process)
(getattr(np, "_core", None) or np.core).multiarray._set_madvise_hugepage(False)
ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)
if sys.argv[1] == "keep":
    from yoloparity.process_allocator import keep_large_buffers
    assert keep_large_buffers()
a = np.ones(64 << 18, np.float32)  # 64 MB, as a batch of 13 letterboxed 640x640 images
del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
b = np.ones(64 << 18, np.float32)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.unit
@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc", reason="the allocator setting is glibc's")
def test_the_programs_allocator_reuses_a_freed_large_buffer_instead_of_faulting_in_new_pages():
    import subprocess
    import sys

    pages = (64 << 20) // 4096

    def faults(mode: str) -> int:
        proc = subprocess.run([sys.executable, "-c", _FAULTS_OF_A_SECOND_BUFFER, mode], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return int(proc.stdout.strip())

    assert faults("default") >= pages // 2  # glibc's default: a new mapping, every page faulted in again
    assert faults("keep") < pages // 20  # kept in the heap: the same pages, already there

"""CUDA paths (torch CUDA fp32/fp16, ONNX Runtime CUDA EP). Skipped cleanly on machines without CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import yoloparity

pytestmark = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def _ort_has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


@needs_cuda
@pytest.mark.parametrize("half", [False, True])
def test_torch_cuda_matches_cpu_per_class_counts(assets, yolov5n_pt, coco_images, half):
    sample = coco_images[:32]
    cpu = yoloparity.load_model(yolov5n_pt).predict(sample, batch=8)
    gpu = yoloparity.load_model(yolov5n_pt, device="cuda:0", half=half).predict(sample, batch=8)
    same = sum(a.detections.counts_per_class() == b.detections.counts_per_class() for a, b in zip(cpu, gpu))
    # fp32 CUDA kernels differ from CPU only in rounding; fp16 may flip borderline detections
    assert same >= (32 if not half else 28)


@needs_cuda
def test_torch_cuda_raw_output_close_to_cpu(assets, yolov5n_pt):
    x = np.load(assets / "golden" / "yolov5n_bus_square.npz")["input"]
    cpu = yoloparity.load_model(yolov5n_pt).raw(x)
    gpu = yoloparity.load_model(yolov5n_pt, device="cuda:0").raw(x)
    assert np.abs(cpu[..., 4:] - gpu[..., 4:]).max() < 1e-3


@pytest.mark.skipif(not _ort_has_cuda(), reason="onnxruntime here has no CUDAExecutionProvider")
def test_onnxruntime_cuda_matches_cpu(yolov5n_onnx, coco_images):
    sample = coco_images[:32]
    cpu = yoloparity.load_model(yolov5n_onnx, backend="onnxruntime").predict(sample, batch=8)
    gpu = yoloparity.load_model(yolov5n_onnx, backend="onnxruntime", device="cuda:0").predict(sample, batch=8)
    assert sum(a.detections.counts_per_class() == b.detections.counts_per_class() for a, b in zip(cpu, gpu)) >= 31

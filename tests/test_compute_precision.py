"""What a run computes in, read from the runtime: torch's math-mode flags and ONNX Runtime's provider options.

The OpenVINO reading (the compiled model's own property, beside the plugin's default) is tested on an Ultralytics
IR folder in ``test_user_models.py``; CUDA runs are not available here, so the readings of the CUDA flags are
tested by setting the flags torch and ONNX Runtime expose (the same values a CUDA run reads)."""

import pytest
import torch

from yoloparity.backends.compute_precision import (
    onnxruntime_precision,
    torch_cpu_precision,
    torch_cuda_precision,
)

pytestmark = pytest.mark.unit


def test_torch_cuda_reading_follows_the_tf32_flags_and_names_torch_s_default():
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, False  # torch's default
        assert torch_cuda_precision(torch, "fp32") == ("tf32 convolutions, fp32 matmul", "tf32 convolutions, fp32 matmul")
        torch.backends.cudnn.allow_tf32 = False  # what --deterministic sets
        assert torch_cuda_precision(torch, "fp32")[0] == "fp32"
        assert torch_cuda_precision(torch, "fp16") == ("fp16", "fp16")  # half precision is what was asked
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_torch_cpu_reading_names_a_lowered_matmul_precision():
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")  # torch's default
        assert torch_cpu_precision(torch, "fp32") == "fp32"
        torch.set_float32_matmul_precision("medium")
        assert torch_cpu_precision(torch, "fp32").startswith("bf16 matmul")
        assert torch_cpu_precision(torch, "fp64") == "fp64"
    finally:
        torch.set_float32_matmul_precision(before)


def test_onnxruntime_reading_from_provider_options():
    assert onnxruntime_precision("fp32", {"CPUExecutionProvider": {}})[0] == "fp32"
    assert onnxruntime_precision("int8", {"CPUExecutionProvider": {}})[0] == "int8"
    cuda = {"CUDAExecutionProvider": {"use_tf32": "1", "device_id": "0"}, "CPUExecutionProvider": {}}
    assert onnxruntime_precision("fp32", cuda) == ("tf32", "ONNX Runtime: CUDA provider option use_tf32")
    cuda["CUDAExecutionProvider"]["use_tf32"] = "0"
    assert onnxruntime_precision("fp32", cuda)[0] == "fp32"
    trt = {"TensorrtExecutionProvider": {"trt_fp16_enable": "1", "trt_int8_enable": "0"}, **cuda}
    assert onnxruntime_precision("fp32", trt)[0] == "fp32, fp16 where TensorRT picks it"

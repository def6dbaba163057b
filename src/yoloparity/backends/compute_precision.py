"""The precision a runtime actually computes in, read back from the runtime, beside the one it would pick by itself.

Why: the precision asked for is not always the one computed. OpenVINO's CPU plugin runs an fp32 model in bf16 on
CPUs with AVX512-BF16/AMX unless told otherwise (we pin f32; a file run by someone else's tool on the plugin's
default gets bf16 without a word, and different detections); PyTorch runs CUDA convolutions in TF32 by default
(``torch.backends.cudnn.allow_tf32``) and ONNX Runtime's CUDA provider its GEMMs and convolutions too (``use_tf32``).
A run record, the predict and val summaries, ``env`` and the audit say what ran, read from the runtime where it
tells (OpenVINO's compiled model, ONNX Runtime's provider options, torch's math-mode flags), not from what we asked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .registry import precision_info

# OpenVINO element type names (``Type.get_type_name()``) in our precision words
OPENVINO_TYPES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16", "f64": "fp64"}


@dataclass(frozen=True)
class ComputePrecision:
    """``computes``: the precision the math runs in (one word, or per kind of op: "tf32 convolutions, fp32 matmul");
    ``runtime_default``: what the runtime would compute in had it not been pinned (None: the same as ``computes``, or
    the runtime has no default of its own); ``source``: where the figure was read."""

    computes: str
    source: str
    runtime_default: str | None = None

    def describe(self) -> str:
        """One line: what ran, the runtime's own default beside it where that differs, and where it was read."""
        line = self.computes
        if self.runtime_default and self.runtime_default != self.computes:
            line += f" (the runtime's default here: {self.runtime_default}; pinned)"
        return f"{line} [{self.source}]"

    def to_dict(self) -> dict:
        """JSON values."""
        return asdict(self)


def openvino_type(value) -> str:
    """Our word for an OpenVINO element type (a ``Type`` or its name)."""
    name = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
    return OPENVINO_TYPES.get(name, name)


def torch_cuda_precision(torch, dtype_word: str) -> tuple[str, str]:
    """(what a CUDA run of ``dtype_word`` computes in, torch's default) from torch's TF32 flags: fp32 convolutions run
    in TF32 when ``cudnn.allow_tf32`` (torch's default: on), matmuls when ``cuda.matmul.allow_tf32`` (default: off)."""
    if not precision_info(dtype_word).is_default:
        return dtype_word, dtype_word
    conv = "tf32" if torch.backends.cudnn.allow_tf32 else "fp32"
    matmul = "tf32" if torch.backends.cuda.matmul.allow_tf32 else "fp32"
    computes = conv if conv == matmul else f"{conv} convolutions, {matmul} matmul"
    return computes, "tf32 convolutions, fp32 matmul"


def torch_cpu_precision(torch, dtype_word: str) -> str:
    """What a CPU run of ``dtype_word`` computes in: fp32 stays fp32 unless the float32 matmul precision was lowered
    (``torch.set_float32_matmul_precision('medium')`` lets oneDNN use bf16)."""
    if precision_info(dtype_word).is_default and torch.get_float32_matmul_precision() == "medium":
        return "bf16 matmul (float32_matmul_precision=medium), fp32 elsewhere"
    return dtype_word


def onnxruntime_precision(saved: str, provider_options: dict[str, dict[str, str]]) -> tuple[str, str]:
    """(what an ONNX Runtime session of a file saved in ``saved`` computes in, where that was read), from the
    session's provider options: the CUDA provider runs an fp32 file's convolutions and GEMMs in TF32 when
    ``use_tf32`` is on (its default), TensorRT in fp16/int8 where its builder flags allow; the CPU provider
    computes as the file was saved."""
    if not precision_info(saved).is_default:
        return saved, "the file's saved precision"
    cuda = provider_options.get("CUDAExecutionProvider")
    trt = provider_options.get("TensorrtExecutionProvider")
    if trt is not None:
        lowered = [kind for kind, key in (("fp16", "trt_fp16_enable"), ("int8", "trt_int8_enable")) if trt.get(key) == "1"]
        computes = f"fp32, {' and '.join(lowered)} where TensorRT picks it" if lowered else "fp32"
        return computes, "ONNX Runtime: TensorRT provider options"
    if cuda is not None:
        return ("tf32" if cuda.get("use_tf32") == "1" else "fp32"), "ONNX Runtime: CUDA provider option use_tf32"
    return saved, "ONNX Runtime: the CPU provider computes as the file was saved"

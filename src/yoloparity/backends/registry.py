"""What each backend can do, as data: one :class:`BackendInfo` per runtime, read by every check and every command.

Before this table the answers were string tests spread over the loader, the CLI, the audit and the benchmark (five
lists of precisions that disagreed: OpenVINO takes bf16, two of them refused it). Now ``load_model``, the CLI's
``--backend``/``--precision`` choices and help, the audit's configurations and ``bench``'s plan all ask the entry.
Like timm's model registry, an entry is declared once beside the name it registers; like Polygraphy's runners, the
runtime behind it is imported only when a backend is created (``factory`` is a "module:function" string).

Adding a backend is one module with ``create(path, device, **options)`` and one entry here.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field

from ..errors import BackendUnavailableError, ModelFileError
from ..io.model_folder import model_in_folder

@dataclass(frozen=True)
class PrecisionInfo:
    """One precision: what a backend is asked to compute in (``--precision``), what a file can be saved in, or both.

    ``asked``: a ``--precision`` setting of some backend (fp32, fp16, bf16, fp64); ``saved``: a precision a model file
    is made in (fp32, fp16 by conversion, int8 by ``quantize``), which a backend that runs files as saved computes
    in whatever it is asked. ``truth``: the float64 reference every other run is held to. ``quantized``: integer
    arithmetic made by calibration. The dtype names are what each runtime calls it ("" where it has none)."""

    name: str
    summary: str
    asked: bool = False
    saved: bool = False
    truth: bool = False
    quantized: bool = False
    numpy_dtype: str = ""
    torch_dtype: str = ""
    openvino_hint: str = ""

    @property
    def is_default(self) -> bool:
        """Whether this is the precision every run has unless told otherwise (fp32)."""
        return self.name == DEFAULT_PRECISION


DEFAULT_PRECISION = "fp32"
PRECISION_INFO: dict[str, PrecisionInfo] = {p.name: p for p in (
    PrecisionInfo("fp32", "float32, every backend's default", asked=True, saved=True, numpy_dtype="float32",
                  torch_dtype="float32", openvino_hint="f32"),
    PrecisionInfo("fp16", "float16: torch on CUDA, OpenVINO's hint, or an fp16 file", asked=True, saved=True,
                  numpy_dtype="float16", torch_dtype="float16", openvino_hint="f16"),
    PrecisionInfo("bf16", "bfloat16: OpenVINO's hint (its default on AMX CPUs)", asked=True, openvino_hint="bf16"),
    PrecisionInfo("fp64", "float64, the unfused network on the CPU: the truth others are held to", asked=True,
                  truth=True, numpy_dtype="float64", torch_dtype="float64"),
    PrecisionInfo("int8", "integer arithmetic, a file made by quantize with calibration", saved=True, quantized=True),
    PrecisionInfo("runtime", "what the runtime picks when not told: OpenVINO's CPU default, bf16 on CPUs with "
                  "AVX512-BF16 or AMX (as a file run on their defaults computes), to see what it changes", asked=True),
)}
# every precision any backend can be asked for, in the order help texts list them
PRECISIONS = tuple(p.name for p in PRECISION_INFO.values() if p.asked)
# every precision a model file can be saved in (what bench makes for a backend that runs files as saved)
FILE_PRECISIONS = tuple(p.name for p in PRECISION_INFO.values() if p.saved)


def precision_info(name: str) -> PrecisionInfo:
    """The entry of precision ``name``; an unknown name is refused with the known ones."""
    info = PRECISION_INFO.get(name)
    if info is None:
        raise ValueError(f"unknown precision {name!r}; choose one of: {', '.join(PRECISION_INFO)}")
    return info


def is_default_precision(name: str | None) -> bool:
    """True for fp32 (and for None: nothing asked)."""
    return name is None or precision_info(name).is_default


def is_truth_precision(name: str | None) -> bool:
    """True for fp64, the float64 truth."""
    return name is not None and precision_info(name).truth


def is_quantized_precision(name: str | None) -> bool:
    """True for int8."""
    return name is not None and precision_info(name).quantized


_DEVICE_NAMES = {"cpu": "the CPU", "cuda": "CUDA", "tensorrt": "TensorRT"}


def device_names(kinds) -> str:
    """``("cuda",)`` -> ``"CUDA"``; several joined with "or": how messages name the devices a capability needs."""
    return " or ".join(_DEVICE_NAMES.get(kind, kind) for kind in kinds)


def device_kind(device: str) -> str:
    """``"cuda:1"`` -> ``"cuda"``: the part of a device string a capability depends on."""
    return device.split(":")[0].lower()


@dataclass(frozen=True)
class BackendInfo:
    """One backend's capabilities.

    ``precisions`` maps each precision the backend can be *asked* for to the device kinds where it runs (torch's
    fp16 needs CUDA, its fp64 truth the CPU). Backends with ``runs_file_precision`` run an fp16 or int8 file at the
    precision it was saved in whatever is asked, which is how they run int8. ``determinism`` says what
    ``--deterministic`` sets there ("" when there is nothing to set); ``session_determinism`` whether that is a
    session option passed when the backend is created (``deterministic=True``) rather than torch's process-wide
    switches."""

    name: str
    factory: str
    summary: str
    reads: tuple[str, ...]
    devices: tuple[str, ...] = ("cpu",)
    precisions: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"fp32": ("cpu",)})
    exports_pt: bool = False
    picks_head: bool = False
    runs_file_precision: bool = False
    determinism: str = ""
    session_determinism: bool = False
    int8_input: bool = False
    layer_capture: bool = False
    # the ONNX graph itself can be searched node by node for the first divergence (two runs of this backend)
    node_capture: bool = False
    # its thread count is the process's (torch.set_num_threads), not a session's: set around the work, put back after
    process_wide_threads: bool = False
    # "module:function" measuring the peak GFLOP/s of a matrix multiply on this runtime and device
    # (``fn(precision, threads, device) -> (gflops, how)``); "" when there is no way to build a model for it here
    peak_probe: str = ""

    def probe_peak(self, precision: str, threads: int, device: str) -> tuple[float | None, str]:
        """(peak GFLOP/s, how it was measured) of a matrix multiply on this runtime at ``precision`` on ``device``, or
        (None, why not): the runtime is imported only now."""
        if not self.peak_probe:
            return None, f"no matrix-multiply probe for {self.name} (no way to build a {self.name} model here)"
        module_name, function = self.peak_probe.split(":")
        return getattr(importlib.import_module(module_name), function)(precision, threads, device)

    @property
    def runs_checkpoint(self) -> bool:
        """Whether it runs a ``.pt`` checkpoint's own network (not an export of it)."""
        return ".pt" in self.reads

    def takes_precision(self, precision: str) -> bool:
        """Whether ``precision`` is a setting of this backend (on some device)."""
        return precision in self.precisions

    def runs_precision_on(self, precision: str, device: str) -> bool:
        """Whether this backend can be asked for ``precision`` on ``device``."""
        return device_kind(device) in self.precisions.get(precision, ())

    def check_device(self, device: str, path: str | None = None) -> None:
        """Refuse a device kind this backend has no path for, naming the ones it has."""
        if device_kind(device) not in self.devices:
            raise BackendUnavailableError(path, f"device '{device}' is not supported by the {self.name} backend "
                                                f"({', '.join(self.devices)} only)")

    def check_precision(self, precision: str, device: str = "cpu", path: str | None = None) -> None:
        """Refuse a precision this backend cannot be asked for on ``device``, saying where it can run."""
        if precision not in PRECISIONS:  # the asked-for ones (int8 is a file's, made by quantize)
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        kinds = self.precisions.get(precision)
        if kinds is None:
            where = [b.name for b in BACKENDS.values() if precision in b.precisions]
            hint = (" give a file of that precision instead (fp16 or int8 files run as saved)" if self.runs_file_precision
                    else "")
            raise BackendUnavailableError(path, f"precision {precision} is not a setting of the {self.name} backend "
                                                f"(it is of: {', '.join(where)});{hint}".rstrip(";"))
        if device_kind(device) not in kinds:
            raise BackendUnavailableError(path, f"precision {precision} on the {self.name} backend runs on "
                                                f"{device_names(kinds)}, not on '{device}'")

    def capability_line(self) -> str:
        """One line for ``--help``: what it reads, where it runs, what it can be asked for."""
        extra = [f"reads {'/'.join(self.reads)}" + (" (and a .pt, exported once)" if self.exports_pt else ""),
                 f"devices {'/'.join(self.devices)}", f"precisions {'/'.join(self.precisions)}"]
        if self.runs_file_precision:
            extra.append("fp16/int8 files as saved")
        return f"{self.name}: {self.summary} ({'; '.join(extra)})"


BACKENDS: dict[str, BackendInfo] = {info.name: info for info in (
    BackendInfo(
        "torch", "yoloparity.backends.torch_backend:create", "the checkpoint's own network in PyTorch", (".pt",),
        devices=("cpu", "cuda"), precisions={"fp32": ("cpu", "cuda"), "fp16": ("cuda",), "fp64": ("cpu",)},
        picks_head=True, determinism="torch.use_deterministic_algorithms, cuDNN deterministic, TF32 off",
        layer_capture=True, process_wide_threads=True, peak_probe="yoloparity.backends.peak_probe:torch_peak"),
    BackendInfo(
        "onnxruntime", "yoloparity.backends.onnxruntime_backend:create", "ONNX Runtime", (".onnx",),
        devices=("cpu", "cuda", "tensorrt"), precisions={"fp32": ("cpu", "cuda", "tensorrt")}, exports_pt=True,
        picks_head=True, runs_file_precision=True, determinism="SessionOptions.use_deterministic_compute",
        session_determinism=True, layer_capture=True, node_capture=True,
        peak_probe="yoloparity.backends.peak_probe:onnxruntime_peak"),
    BackendInfo(
        "openvino", "yoloparity.backends.openvino_backend:create", "OpenVINO on the CPU", (".onnx", ".xml"),
        precisions={"fp32": ("cpu",), "fp16": ("cpu",), "bf16": ("cpu",), "runtime": ("cpu",)}, exports_pt=True,
        picks_head=True,
        runs_file_precision=True, determinism="EXECUTION_MODE_HINT=ACCURACY", session_determinism=True,
        layer_capture=True, peak_probe="yoloparity.backends.peak_probe:openvino_peak"),
    BackendInfo(
        "litert", "yoloparity.backends.litert_backend:create", "LiteRT (TFLite) on the CPU", (".tflite",),
        runs_file_precision=True, int8_input=True),
)}


def backend_info(name: str) -> BackendInfo:
    """The entry of ``name``; an unknown name is refused with the known ones."""
    info = BACKENDS.get(name)
    if info is None:
        raise BackendUnavailableError(None, f"unknown backend '{name}'; choose one of: {', '.join(BACKENDS)}")
    return info


def available_backends() -> list[str]:
    """The backend names, in registry order (the one list every command and report takes them from)."""
    return list(BACKENDS)


def backends_with(predicate) -> list[str]:
    """The names of the backends whose entry satisfies ``predicate`` (e.g. ``lambda b: b.layer_capture``)."""
    return [b.name for b in BACKENDS.values() if predicate(b)]


def backend_for(path: str) -> str:
    """The backend that reads ``path`` by default, from its suffix (the first entry that reads it); a folder by the
    model file in it."""
    if os.path.isdir(path):
        path = model_in_folder(path)
    suffix = os.path.splitext(path)[1].lower()
    for info in BACKENDS.values():
        if suffix in info.reads:
            return info.name
    known = sorted({s for info in BACKENDS.values() for s in info.reads})
    raise ModelFileError(path, f"no backend reads '{suffix or 'files without a suffix'}' files; model files are {', '.join(known)}")


def readers_of(suffix: str) -> list[str]:
    """The backends that read files with ``suffix``."""
    return [info.name for info in BACKENDS.values() if suffix.lower() in info.reads]

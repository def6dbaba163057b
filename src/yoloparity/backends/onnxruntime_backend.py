"""ONNX Runtime backend: our exports and those of the YOLOv5 and Ultralytics exporters.

The spec comes from the file's metadata (:mod:`yoloparity.backends.metadata`).

On the CPU, a file that takes one image at a time (dynamic batch, or a static batch of 1) runs every image as its
own single-threaded session run, ``threads`` images at once (ONNX Runtime's ``Run`` is thread-safe and releases the
GIL) — as the torch backend does. Measured on yolov8n at 640 on 2 cores: 50-54 ms wall and 98-107 ms CPU per image,
against 66-74 ms and 117-125 ms for one image at a time on two intra-op threads, which wait on each other at every
kernel; the outputs are bitwise the same at 1 and 2 intra-op threads, and a per-image run cannot depend on the batch.
A lone image (a batch of one: a camera frame, a one-image predict, a latency measurement) has no other image to run
beside it, so it runs on a second session of ``threads`` intra-op threads, made at its first use — bitwise the same
output (ONNX Runtime's CPU kernels split their work by output, never inside a sum; a test holds a batch and its
images run alone equal), in 66-74 ms against ~100 ms on one thread. A file with a static batch above 1, and the GPU
providers, run the batch as one session run.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import BackendUnavailableError, InputNotFoundError, ModelFileError
from ..process_settings import machine_threads
from .base import BackendBase, ShapeConstraints, run_image_by_image
from .compute_precision import ComputePrecision, onnxruntime_precision
from .int8_weights import runtime_notes
from .metadata import (
    check_head_output,
    head_notes,
    onnx_file_precision,
    spec_from_metadata,
    static_dim,
)

_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def providers_for(device: str, path: str | None) -> list:
    """The execution providers of ``device`` (``cpu``, ``cuda:N``, ``tensorrt:N``), the CPU's behind a GPU's for the
    nodes it cannot run; refused, naming ``path``, when this onnxruntime build lacks the provider."""
    import onnxruntime as ort

    provider = _PROVIDERS.get(device.split(":")[0])
    if provider is None:
        raise BackendUnavailableError(path, f"device '{device}' is not supported by onnxruntime (cpu, cuda:N, tensorrt:N)")
    if provider not in ort.get_available_providers():
        raise BackendUnavailableError(path, f"device '{device}' needs {provider}, which this onnxruntime build does not have")
    if provider == _PROVIDERS["cpu"]:
        return [provider]
    index = int(device.split(":")[1]) if ":" in device else 0
    return [(provider, {"device_id": index}), _PROVIDERS["cpu"]]


class OnnxRuntimeBackend(BackendBase):
    """An ONNX file on ONNX Runtime (CPU, CUDA or TensorRT provider), at the precision the file was saved in;
    ``deterministic`` sets the session's deterministic compute."""
    name = "onnxruntime"

    def __init__(self, path: str, device: str = "cpu", threads: int | None = None, deterministic: bool = False):
        if not os.path.exists(path):
            raise InputNotFoundError(path, "no such file")
        providers = providers_for(device, path)
        self.threads = int(threads) if threads else machine_threads()
        # on the CPU, sessions of one intra-op thread, images in parallel (module docstring) — unless the file's static
        # batch is above 1: then the batch is one run, on ``threads`` intra-op threads
        self.session = _session(path, providers, 1 if device == "cpu" else threads, deterministic)
        per_image = device == "cpu" and static_dim(self.session.get_inputs()[0].shape[0]) in (None, 1)
        if device == "cpu" and not per_image:
            self.session = _session(path, providers, self.threads, deterministic)
        self.path = path
        self.device = device
        self.precision = onnx_file_precision(path)
        self._computes = ComputePrecision(*onnxruntime_precision(self.precision, self.session.get_provider_options()))
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelFileError(path, f"expected one image input, found {len(inputs)}: {[i.name for i in inputs]}")
        self.input = inputs[0]
        if self.input.type not in ("tensor(float)", "tensor(float16)"):
            raise ModelFileError(path, f"input '{self.input.name}' is {self.input.type}; only float32/float16 inputs are supported here")
        self.input_dtype = np.float16 if self.input.type == "tensor(float16)" else np.float32
        outputs = self.session.get_outputs()
        names = [o.name for o in outputs]
        self.output = outputs[names.index("output0")] if "output0" in names else outputs[0]
        in_shape = list(self.input.shape)
        if len(in_shape) != 4 or (static_dim(in_shape[1]) not in (None, 3)):
            raise ModelFileError(path, f"unexpected input shape {in_shape}: expected (N, 3, H, W)")
        meta = self.session.get_modelmeta().custom_metadata_map
        self.spec = spec_from_metadata(path, meta, (static_dim(in_shape[2]), static_dim(in_shape[3])), list(self.output.shape))
        # images run one by one on the CPU (module docstring): any batch is taken, whatever the file's static batch of 1
        batch = None if per_image else static_dim(in_shape[0])
        self.constraints = ShapeConstraints(batch=batch, height=static_dim(in_shape[2]), width=static_dim(in_shape[3]))
        self.notes = runtime_notes(path, device) + head_notes(self.spec)
        self.per_image = per_image
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="yp-ort") if per_image and self.threads > 1 else None
        self._session_args = (path, providers, deterministic)
        self._lone_session = None  # ``threads`` intra-op threads for a batch of one image (module docstring)

    def compute_precision(self) -> ComputePrecision:
        """What the session computes in, from its providers' options (TF32 on the CUDA provider by its default), read
        when the session was made (still known after ``close``)."""
        return self._computes

    def _run_one(self, batch: np.ndarray, session=None) -> np.ndarray:
        feed = {self.input.name: batch.astype(self.input_dtype, copy=False)}
        return np.asarray((session or self.session).run([self.output.name], feed)[0], dtype=np.float32)

    def _run_alone(self, batch: np.ndarray) -> np.ndarray:
        """A batch of one image on the session of ``threads`` intra-op threads, made at its first use."""
        if self._lone_session is None:
            path, providers, deterministic = self._session_args
            self._lone_session = _session(path, providers, self.threads, deterministic)
        return self._run_one(batch, self._lone_session)

    def _run_impl(self, batch: np.ndarray) -> np.ndarray:
        if not self.per_image:
            out = self._run_one(batch)
        elif len(batch) == 1 and self.pool is not None:
            out = self._run_alone(batch)
        else:
            out = run_image_by_image(self._run_one, batch, self.pool)
        check_head_output(self.path, self.spec, out, batch.shape, f"output '{self.output.name}'")
        return out

    def layer_outputs(self, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """The tensors leaving each layer added as outputs of a session like this one (same providers, full
        graph optimization, as the configuration runs)."""
        import onnx
        import onnxruntime as ort

        from .onnx_layers import onnx_layer_tensors, with_outputs

        model = onnx.load(self.path)
        pairs = onnx_layer_tensors(model, self.path)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        session = ort.InferenceSession(with_outputs(model, [(t, e) for _, t, e in pairs]).SerializeToString(), opts,
                                       providers=self.session.get_providers())
        values = session.run([t for _, t, _ in pairs], {self.input.name: x.astype(self.input_dtype)})
        return [(layer, np.asarray(v, np.float64)) for (layer, _, _), v in zip(pairs, values)]

    def _release(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None
        self.session = self._lone_session = None


def _session(path: str, providers: list, intra_threads: int | None, deterministic: bool):
    """An ONNX Runtime session on ``path`` with full graph optimization, ``intra_threads`` intra-op threads (None:
    the runtime's default) that sleep between kernels, or an error naming the file."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if intra_threads:
        opts.intra_op_num_threads = int(intra_threads)
        opts.inter_op_num_threads = 1
    # intra-op threads that finish a kernel sleep instead of spinning for the next: on 2 cores a spinning
    # thread burns the core our decode threads need (predict, yolov8n at 640: 28.3-33.0 CPU s spinning,
    # 24.3-25.5 not, the same wall time; BENCHMARKS.md "Predict beside Ultralytics' own")
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if deterministic:
        opts.use_deterministic_compute = True
    try:
        return ort.InferenceSession(path, sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ModelFileError(path, f"onnxruntime cannot load this file ({str(exc).splitlines()[0][:200]})") from exc


def create(path: str, device: str = "cpu", **options) -> OnnxRuntimeBackend:
    """The registry's factory for ``onnxruntime``."""
    return OnnxRuntimeBackend(path, device=device, **options)

"""Audit configurations: ``key=value,...`` strings naming how to run the model.

Keys: ``backend``, ``device``, ``precision``, ``batch``, ``threads``, ``imgsz``, ``mode``, ``model`` (another file
of the same network, e.g. an ONNX export) and ``head`` (the head branch of an end-to-end checkpoint, as ``--head``:
the configuration's ``head_branch``). The short form names values alone,
``:``-separated (``torch:fp32``, ``onnxruntime:fp16:cuda:0``, ``openvino:square``): each is recognised as a backend,
precision, device, mode or head. An unknown key or a value of the wrong kind is an error naming it and the forms
accepted, never silently ignored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..backends.registry import BACKENDS, PRECISIONS, backend_info, device_kind
from ..errors import YoloParityError
from ..settings import check_mode
from ..types import HEAD_BRANCHES

KEYS = ("backend", "device", "precision", "batch", "threads", "imgsz", "mode", "model", "head")
DEVICES = tuple(dict.fromkeys(kind for info in BACKENDS.values() for kind in info.devices))


class SpecError(YoloParityError):
    """A --config / --reference string that cannot be understood."""


@dataclass(frozen=True)
class RunConfig:
    """One way to run the audited model: backend, device, precision, batch, threads, input size and mode, and
    optionally another file of the same network or the other head of an end-to-end checkpoint."""
    backend: str = "torch"
    device: str = "cpu"
    precision: str = "fp32"
    batch: int = 1
    threads: int | None = None
    imgsz: int | None = None
    mode: str = "rect"
    model: str | None = None  # None: the audited model itself
    head_branch: str | None = None  # end-to-end checkpoints: "one2one" (default) or "one2many" (key ``head``)

    @property
    def label(self) -> str:
        """A short name for tables and reports, e.g. ``onnxruntime cpu fp32 b16 rect``."""
        parts = [f"{self.backend}", self.device, self.precision, f"b{self.batch}", self.mode]
        if self.threads:
            parts.append(f"t{self.threads}")
        if self.imgsz:
            parts.append(str(self.imgsz))
        if self.head_branch:
            parts.append(self.head_branch)
        if self.model:
            parts.append(self.model.rsplit("/", 1)[-1])
        return " ".join(parts)

    def to_dict(self) -> dict:
        """The configuration as JSON values."""
        return asdict(self)


def _positive_int(key: str, value: str, text: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise SpecError(None, f"config '{text}': {key} must be a whole number, got '{value}'") from None
    if number < 1:
        raise SpecError(None, f"config '{text}': {key} must be >= 1, got {number}")
    return number


FORMS = ("key=value pairs, e.g. backend=onnxruntime,precision=fp16,batch=16; or the short form of values alone, e.g. "
         "torch:fp32 or onnxruntime:fp16:cuda:0,batch=16")


def _short_form(part: str, text: str) -> list[tuple[str, str]]:
    """``"onnxruntime:fp16:cuda:0"`` → [("backend", …), ("precision", …), ("device", "cuda:0")]: each value names
    its key by what it is (backend, precision, device, mode or head)."""
    tokens: list[str] = []
    for token in (t.strip() for t in part.split(":")):
        if token.isdigit() and tokens and device_kind(tokens[-1]) in DEVICES:
            tokens[-1] += f":{token}"  # cuda:0 is one value
        elif token:
            tokens.append(token)
    kinds = (("backend", BACKENDS), ("precision", PRECISIONS), ("mode", ("rect", "square")), ("head", HEAD_BRANCHES))
    pairs = []
    for token in tokens:
        key = next((k for k, known in kinds if token in known), None)
        if key is None and device_kind(token) in DEVICES:
            key = "device"
        if key is None:
            raise SpecError(None, f"config '{text}': '{token}' is neither key=value nor a backend, precision, device, "
                                  f"mode or head name; accepted: {FORMS}")
        pairs.append((key, token))
    return pairs


def _pairs(text: str) -> list[tuple[str, str]]:
    """The (key, value) pairs of a config string, in order, both forms."""
    pairs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            pairs.extend(_short_form(part, text))
            continue
        if not value.strip():
            raise SpecError(None, f"config '{text}': '{part}' has no value; accepted: {FORMS}")
        pairs.append((key.strip(), value.strip()))
    return pairs


def parse_config(text: str) -> RunConfig:
    """``"backend=onnxruntime,batch=16"`` or ``"onnxruntime:fp16,batch=16"`` → RunConfig; unknown keys and bad
    values raise :class:`SpecError`, naming the forms accepted."""
    values: dict = {}
    for key, value in _pairs(text):
        if key not in KEYS:
            raise SpecError(None, f"config '{text}': unknown key '{key}' (known: {', '.join(KEYS)}); accepted: {FORMS}")
        if key in values:
            raise SpecError(None, f"config '{text}': '{key}' given twice")
        if key == "backend" and value not in BACKENDS:
            raise SpecError(None, f"config '{text}': backend must be one of {', '.join(BACKENDS)}, got '{value}'")
        if key == "precision" and value not in PRECISIONS:
            raise SpecError(None, f"config '{text}': precision must be one of {', '.join(PRECISIONS)}, got '{value}'")
        if key == "mode":
            try:
                check_mode(value)
            except ValueError as exc:
                raise SpecError(None, f"config '{text}': {exc}") from None
        if key == "head" and value not in HEAD_BRANCHES:
            raise SpecError(None, f"config '{text}': head must be one of {', '.join(HEAD_BRANCHES)}, got '{value}'")
        if key == "device" and device_kind(value) not in DEVICES:
            raise SpecError(None, f"config '{text}': device must be one of {', '.join(DEVICES)} (with :N), got '{value}'")
        values[key] = _positive_int(key, value, text) if key in ("batch", "threads", "imgsz") else value
    if not values:
        raise SpecError(None, f"an empty config: give {FORMS}")
    if "head" in values:  # the key says it as --head does
        values["head_branch"] = values.pop("head")
    config = RunConfig(**values)
    check_runnable(config, text)
    return config


def check_runnable(config: RunConfig, text: str) -> None:
    """The backend's registry entry takes this device and precision; otherwise say where the precision runs."""
    info = backend_info(config.backend)
    if device_kind(config.device) not in info.devices:
        raise SpecError(None, f"config '{text}': backend={config.backend} runs on device={'/'.join(info.devices)}")
    kinds = info.precisions.get(config.precision)
    if kinds is None or device_kind(config.device) not in kinds:
        where = [f"backend={b.name} (device={'/'.join(b.precisions[config.precision])})"
                 for b in BACKENDS.values() if config.precision in b.precisions]
        hint = "; or give model=<a file of that precision> (e.g. from quantize)" if info.runs_file_precision else ""
        raise SpecError(None, f"config '{text}': precision={config.precision} runs on {' and '.join(where)}, not "
                              f"backend={config.backend}, device={config.device}{hint}")

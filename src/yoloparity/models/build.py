"""Build our own ``torch.nn`` model from the architecture a checkpoint carries, and load its tensors.

The checkpoint's ``yaml`` dict lists the layers (from, repeats, module, args) exactly as the
YOLOv5 / Ultralytics configs do. We build the same graph from :mod:`.layers` and :mod:`.heads`,
check that every tensor name and shape matches the checkpoint (no silent partial loads), take
the numerics the pickled modules carry (BatchNorm ``eps``, each Conv's activation, attention
head sizes) and fold BatchNorm into the convolutions.
"""

from __future__ import annotations

import ast
import json
import math
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, UnsupportedModuleError
from ..types import HEAD_BRANCHES, ModelSpec
from . import layers as L
from .checkpoint import Checkpoint, Stub, named_modules, named_tensors, stub_type
from .head_layers import DetectV5, DetectV8

_REPEATED = {"C3", "C3k", "C2f", "C3k2", "C2PSA", "A2C2f", "C2fCIB"}  # blocks that take the repeat count as an argument
_CHANNEL_BLOCKS = {"Conv", "DWConv", "Bottleneck", "C3", "C3k", "C2f", "C3k2", "SPPF", "C2PSA", "A2C2f", "SCDown", "PSA",
                   "C2fCIB"}
_BLOCKS: dict[str, type[nn.Module]] = {
    "Conv": L.Conv,
    "DWConv": L.DWConv,
    "Bottleneck": L.Bottleneck,
    "C3": L.C3,
    "C3k": L.C3k,
    "C2f": L.C2f,
    "C3k2": L.C3k2,
    "SPPF": L.SPPF,
    "C2PSA": L.C2PSA,
    "A2C2f": L.A2C2f,
    "SCDown": L.SCDown,
    "PSA": L.PSA,
    "C2fCIB": L.C2fCIB,
}
_KNOWN = set(_BLOCKS) | {"Concat", "nn.Upsample", "Upsample", "Detect", "v10Detect"}
_ACTIVATIONS = {
    "torch.nn.modules.activation.SiLU": lambda stub: nn.SiLU(),
    "torch.nn.modules.linear.Identity": lambda stub: nn.Identity(),
    "torch.nn.modules.activation.ReLU": lambda stub: nn.ReLU(),
    "torch.nn.modules.activation.Hardswish": lambda stub: nn.Hardswish(),
    "torch.nn.modules.activation.LeakyReLU": lambda stub: nn.LeakyReLU(getattr(stub, "negative_slope", 0.01)),
}
# Tensors a checkpoint may hold that are derived at run time here (grids recomputed per input size).
_DERIVED = ("anchor_grid", ".grid", "strides")


def _divisible(x: float, divisor: int = 8) -> int:
    return int(math.ceil(x / divisor) * divisor)


class YoloNet(nn.Module):
    """A YOLO detection network: a list of layers wired by their ``from`` indices, ending in a head."""

    def __init__(self, layers: list[nn.Module], froms: list[Any], save: set[int]):
        super().__init__()
        self.model = nn.ModuleList(layers)
        self.froms = froms
        self.save = save

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The raw head output of a batch (the layers run as the checkpoint's yaml wires them)."""
        outputs: list[torch.Tensor | None] = []
        for i, (layer, f) in enumerate(zip(self.model, self.froms)):
            if f != -1:
                x = outputs[f] if isinstance(f, int) else [x if j == -1 else outputs[j] for j in f]
            x = layer(x)
            outputs.append(x if i in self.save else None)
        return x

    def fuse(self) -> "YoloNet":
        """Fold every Conv's BatchNorm into its weights (the float32 network the references run)."""
        for module in self.modules():
            if isinstance(module, L.Conv):
                module.fuse()
        return self


@dataclass
class BuiltModel:
    """A network built from a checkpoint, with its spec."""
    net: YoloNet
    spec: ModelSpec


def _literal(arg: Any, env: dict[str, Any]) -> Any:
    if not isinstance(arg, str):
        return arg
    if arg in env:
        return env[arg]
    try:
        return ast.literal_eval(arg)
    except (ValueError, SyntaxError):
        return arg


# the tensor that ends each block: its first dim is the block's output width, whatever the yaml's scaling says
_OUTPUT_CONV = {"Conv": "conv.weight", "DWConv": "conv.weight", "Bottleneck": "cv2.conv.weight",
                "C3": "cv3.conv.weight", "C3k": "cv3.conv.weight"}  # every other channel block ends in cv2


def _stored_width(tensors: dict[str, torch.Tensor], i: int, name: str) -> int | None:
    """Layer ``i``'s output width as its weights say, None when the checkpoint lacks the tensor."""
    weight = tensors.get(f"model.{i}.{_OUTPUT_CONV.get(name, 'cv2.conv.weight')}")
    return int(weight.shape[0]) if weight is not None and weight.ndim == 4 else None


def _stored_depth(tensors: dict[str, torch.Tensor], i: int) -> int | None:
    """How many inner blocks layer ``i`` holds (the distinct ``model.i.m.K`` indices), None when it holds none."""
    prefix = f"model.{i}.m."
    found = {key[len(prefix):].split(".", 1)[0] for key in tensors if key.startswith(prefix)}
    return len(found) if found and all(k.isdigit() for k in found) else None


def _block_args(name: str, args: list, tensors: dict[str, torch.Tensor], i: int, scale: str | None, family: str) -> list:
    """The block's constructor arguments with what the weights say in place of the yaml's scaling rules: whether a
    C3k2's inner blocks are C3k (m/l/x scales of YOLO11), whether an A2C2f is residual and its MLP ratio (YOLO12 l/x)."""
    prefix = f"model.{i}.m.0."
    if name == "C3k2":
        if f"{prefix}cv3.conv.weight" in tensors or f"{prefix}cv1.conv.weight" in tensors:
            args[3] = f"{prefix}cv3.conv.weight" in tensors  # a C3k has cv3; a bottleneck has not
        elif scale and scale in "mlx" and family == "ultralytics":
            args[3] = True
    if name == "A2C2f":
        gamma = f"model.{i}.gamma" in tensors
        hidden = tensors.get(f"{prefix}0.mlp.0.conv.weight")
        if hidden is not None and len(args) >= 5:  # the ratio that gives the stored width: int(dim * ratio)
            args = [*args[:5], gamma, (hidden.shape[0] + 0.5) / hidden.shape[1]]
        elif scale and scale in "lx" and len(args) >= 5:  # the yaml's scaling rule: residual, mlp ratio 1.2
            args = [*args[:5], True, 1.2]
    return args


def _yaml_scaling(cfg: dict) -> tuple[str | None, float, float, float]:
    """(scale, depth multiple, width multiple, max channels) the yaml states: Ultralytics' ``scales`` table at its
    ``scale`` (the first one when a file was trained from a yaml without one, as the trainer does), YOLOv5's
    multiples. Used only where the checkpoint holds no tensor to say."""
    scale, scales = cfg.get("scale"), cfg.get("scales")
    if scales:
        scale = scale or next(iter(scales))
        depth, width, max_channels = scales[scale]
        return scale, depth, width, max_channels
    return scale, cfg.get("depth_multiple", 1.0), cfg.get("width_multiple", 1.0), float("inf")


def build_net(ckpt: Checkpoint) -> YoloNet:
    """Create the (unfused, randomly initialized) network the checkpoint describes.

    The yaml gives the wiring (which layer feeds which, module kinds, kernel sizes, strides); every width, depth and
    head shape is read from the stored tensors, and the yaml's scaling rules (depth/width multiples, max channels,
    the scale's flags) are used only where the checkpoint holds no tensor to say. Trainers write files the yaml
    alone does not describe: a fine-tune keeps the pretrained head width (a class branch 80 wide beside a 3-class
    last conv), a file trained from a yaml without a ``scale`` gets the first one."""
    cfg = ckpt.model.yaml
    family = ckpt.family
    tensors = named_tensors(ckpt.model)
    nc = stored_nc(ckpt, tensors)
    scale, depth, width, max_channels = _yaml_scaling(cfg)
    strides = [float(s) for s in _tensor_list(getattr(ckpt.model, "stride", None))]
    env = {"nc": nc, "anchors": cfg.get("anchors")}
    ch = [int(cfg.get("channels", cfg.get("ch", 3)))]
    layers: list[nn.Module] = []
    froms: list[Any] = []
    save: set[int] = set()
    made_by = _made_by(ckpt)
    for i, (f, n, name, args) in enumerate(cfg["backbone"] + cfg["head"]):
        if name not in _KNOWN:
            raise UnsupportedModuleError(ckpt.path, f"layer {i} uses module '{name}'{made_by}, which yoloparity does not "
                                                    "implement")

        args = [_literal(a, env) for a in args]
        n = max(round(n * depth), 1) if n > 1 else n
        c2 = ch[f] if isinstance(f, int) else None
        if name in _CHANNEL_BLOCKS:
            c1, c2 = ch[f], args[0]
            if c2 != nc:
                c2 = _divisible(min(c2, max_channels) * width, 8)
            c2 = _stored_width(tensors, i, name) or c2
            args = [c1, c2, *args[1:]]
            if name in _REPEATED:
                args.insert(2, _stored_depth(tensors, i) or n)
                n = 1
            module = _BLOCKS[name](*_block_args(name, args, tensors, i, scale, family))
        elif name == "Concat":
            c2 = sum(ch[x] for x in f)
            module = L.Concat(*args)
        elif name in ("nn.Upsample", "Upsample"):
            module = nn.Upsample(*args)
        else:  # Detect
            module = _detect_head(ckpt, i, args, [ch[x] for x in f], strides, nc, tensors)
        if n > 1:
            module = nn.Sequential(*(type(module)(*args) for _ in range(n)))
        layers.append(module)
        froms.append(f)
        save.update(x % i for x in ([f] if isinstance(f, int) else f) if x != -1)
        if i == 0:
            ch = []
        ch.append(c2)
    return YoloNet(layers, froms, save)


def _head_index(ckpt: Checkpoint) -> int:
    return len(ckpt.model.yaml["backbone"]) + len(ckpt.model.yaml["head"]) - 1


def _anchors_per_cell(ckpt: Checkpoint) -> int:
    """YOLOv5's anchors per grid cell: the stored anchors buffer's, else the yaml's."""
    stored = (getattr(_module_stub(ckpt, _head_index(ckpt)), "_buffers", None) or {}).get("anchors")
    if isinstance(stored, torch.Tensor) and stored.ndim == 3:
        return int(stored.shape[1])
    anchors = ckpt.model.yaml.get("anchors")
    return len(anchors[0]) // 2 if isinstance(anchors, list) else int(anchors or 3)


def stored_nc(ckpt: Checkpoint, tensors: dict[str, torch.Tensor] | None = None) -> int:
    """The class count the head's last convolution computes (the yaml's ``nc`` when the tensor is absent): a
    fine-tune's yaml and its tensors can disagree, and the tensors are what runs."""
    tensors = named_tensors(ckpt.model) if tensors is None else tensors
    i = _head_index(ckpt)
    yaml_nc = int(ckpt.model.yaml.get("nc", 80))
    if ckpt.family == "yolov5":
        weight = tensors.get(f"model.{i}.m.0.weight")
        if weight is None:
            return yaml_nc
        rows, na = int(weight.shape[0]), _anchors_per_cell(ckpt)
        if rows % na or rows // na < 6:
            raise CheckpointError(ckpt.path, f"tensor model.{i}.m.0.weight has {rows} output channels, not a multiple of "
                                             f"{na} anchors x (5 + classes)")
        return rows // na - 5
    weight = tensors.get(f"model.{i}.cv3.0.2.weight")
    return int(weight.shape[0]) if weight is not None else yaml_nc


def _detect_head(ckpt: Checkpoint, i: int, args: list, chs: list[int], strides: list[float], nc: int,
                 tensors) -> nn.Module:
    """The detection head of layer ``i``: YOLOv5's anchors, or the anchor-free head with the widths its tensors have
    (box and class branch widths, DFL bins, depthwise class branch, end-to-end branches)."""
    if len(strides) != len(chs):
        raise CheckpointError(ckpt.path, f"model stride {strides} does not match the {len(chs)} detection levels")
    if ckpt.family == "yolov5":
        anchors = args[1]
        if isinstance(anchors, int):
            anchors = [list(range(anchors * 2))] * len(chs)
        return DetectV5(nc, anchors, chs, strides)
    head_stub = _module_stub(ckpt, i)
    box_out = tensors.get(f"model.{i}.cv2.0.2.weight")
    reg_max = int(getattr(head_stub, "reg_max", ckpt.model.yaml.get("reg_max", 16)))
    if box_out is not None:
        reg_max = int(box_out.shape[0]) // 4
    dw_cls = f"model.{i}.cv3.0.0.0.conv.weight" in tensors
    box_width = tensors.get(f"model.{i}.cv2.0.0.conv.weight")
    cls_width = tensors.get(f"model.{i}.cv3.0.0.1.conv.weight" if dw_cls else f"model.{i}.cv3.0.0.conv.weight")
    return DetectV8(nc, chs, strides, reg_max=reg_max, dw_cls=dw_cls, end2end=is_end2end(ckpt),
                    c2=int(box_width.shape[0]) if box_width is not None else None,
                    c3=int(cls_width.shape[0]) if cls_width is not None else None)


def is_end2end(ckpt: Checkpoint) -> bool:
    """An NMS-free head: YOLO26's yaml says ``end2end``, YOLOv10's head is a ``v10Detect``."""
    cfg = ckpt.model.yaml
    return bool(cfg.get("end2end")) or any(row[2] == "v10Detect" for row in cfg["head"])


def _writer(ckpt: Checkpoint) -> str:
    """'Ultralytics 8.4.190' when the checkpoint says which version saved it, else ''."""
    version = ckpt.meta.get("version") if isinstance(ckpt.meta, dict) else None
    return f"Ultralytics {version}" if version else ""


def _made_by(ckpt: Checkpoint) -> str:
    """' (checkpoint of Ultralytics 8.4.190)' for messages, else ''."""
    return f" (checkpoint of {_writer(ckpt)})" if _writer(ckpt) else ""


_PROVENANCE_KEYS = ("date", "version", "train_args", "reconstructed_from")
_LONG_TEXT = 200  # a provenance string longer than this (notes) stays in the checkpoint
_LONG_JSON = 2000  # and so does a dict or list whose JSON is longer than this (a per-layer weight mapping)


def _json_value(value: Any) -> Any:
    """``value`` as plain JSON (numpy scalars, paths and sizes as numbers, strings and lists), None if it has no
    short JSON form: what a spec can carry into an ONNX file's metadata and a run record."""
    out = _json_form(value)
    if isinstance(out, (dict, list)) and len(json.dumps(out)) > _LONG_JSON:
        return None
    return out


def _json_form(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value if not (isinstance(value, str) and len(value) > _LONG_TEXT) else None
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / torch scalars
        return _json_form(value.item())
    if isinstance(value, (list, tuple)) and all(isinstance(v, (bool, int, float, str)) for v in value):
        return list(value)
    if isinstance(value, dict):
        out = {str(k): _json_value(v) for k, v in value.items()}  # each entry short, or left out
        return {k: v for k, v in out.items() if v is not None}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return None


def checkpoint_provenance(ckpt: Checkpoint) -> dict[str, Any]:
    """The metadata the checkpoint's writer saved beside the model (date, version, training arguments, and the
    ``reconstructed_from`` record of a recovered file), reduced to short JSON values."""
    meta = ckpt.meta if isinstance(ckpt.meta, dict) else {}
    found = {key: _json_form(meta.get(key)) for key in _PROVENANCE_KEYS}  # entries within each are capped
    return {key: value for key, value in found.items() if value not in (None, {}, "")}


def _module_stub(ckpt: Checkpoint, index: int) -> Stub:
    return ckpt.model._modules["model"]._modules[str(index)]


def _tensor_list(value: Any) -> list[float]:
    if isinstance(value, torch.Tensor):
        return value.flatten().tolist()
    if isinstance(value, (list, tuple)):
        return list(value)
    return [8.0, 16.0, 32.0]


def _apply_checkpoint_numerics(net: YoloNet, ckpt: Checkpoint) -> None:
    """Copy what changes numerics from the pickled modules: BN eps, activations, attention sizes."""
    stubs = named_modules(ckpt.model)
    for name, module in net.named_modules():
        stub = stubs.get(name)
        if stub is None:
            continue
        if isinstance(module, nn.BatchNorm2d):
            module.eps = float(getattr(stub, "eps", module.eps))
        elif isinstance(module, L.Conv):
            act = (getattr(stub, "_modules", None) or {}).get("act")
            if act is not None:
                kind = stub_type(act)
                if kind not in _ACTIVATIONS:
                    raise UnsupportedModuleError(ckpt.path, f"module '{name}' uses activation '{kind}', which yoloparity does not implement")
                module.act = _ACTIVATIONS[kind](act)
        elif isinstance(module, L.Attention):
            for attr in ("num_heads", "key_dim", "head_dim", "scale"):
                if hasattr(stub, attr):
                    setattr(module, attr, type(getattr(module, attr))(getattr(stub, attr)))
        elif isinstance(module, nn.MaxPool2d):
            for attr in ("kernel_size", "stride", "padding", "dilation"):
                if hasattr(stub, attr):
                    setattr(module, attr, getattr(stub, attr))


def load_weights(net: YoloNet, ckpt: Checkpoint) -> None:
    """Load every checkpoint tensor by name, refusing any missing, unexpected or mis-shaped one."""
    source = {k: v for k, v in named_tensors(ckpt.model).items() if not any(d in k for d in _DERIVED)}
    target = net.state_dict()
    missing = sorted(set(target) - set(source))
    unexpected = sorted(set(source) - set(target))
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"missing {len(missing)} tensors (first: {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected tensors (first: {unexpected[0]})")
        raise CheckpointError(ckpt.path, "architecture does not match the weights: " + ", ".join(detail))
    for key, value in source.items():
        if tuple(value.shape) != tuple(target[key].shape):
            raise CheckpointError(ckpt.path, f"tensor {key} has shape {tuple(value.shape)}, the architecture expects {tuple(target[key].shape)}")
    net.load_state_dict({k: v.to(target[k].dtype) for k, v in source.items()}, strict=True)


def trained_imgsz(ckpt: Checkpoint) -> tuple[tuple[int, int], str]:
    """The image size the checkpoint was trained at, and where that was read: Ultralytics' ``train_args['imgsz']``
    (or the model's ``args``), YOLOv5's ``opt['imgsz']`` (``img_size`` in older files, train and test sizes);
    640, said so, when the file keeps none. The reference predicts and validates a ``.pt`` at that size."""
    model = ckpt.model
    for where, args in (("train_args", ckpt.meta.get("train_args")), ("args", getattr(model, "args", None)),
                        ("opt", ckpt.meta.get("opt"))):
        if not isinstance(args, dict):
            continue
        for key in ("imgsz", "img_size"):
            value = args.get(key)
            if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
                value = value[-1] if key == "img_size" else value  # YOLOv5's img_size is [train, test]
            if isinstance(value, int) and value > 0:
                return (value, value), f"the checkpoint's {where}['{key}']"
            if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
                return (int(value[0]), int(value[1])), f"the checkpoint's {where}['{key}']"
    return (640, 640), "the default (the checkpoint records no training size)"


def spec_from_checkpoint(ckpt: Checkpoint, sha256: str = "") -> ModelSpec:
    """The :class:`ModelSpec` a checkpoint defines: names, head format, strides, anchors, family, provenance."""
    model = ckpt.model
    names = getattr(model, "names", None)
    nc = stored_nc(ckpt)
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if not names or len(names) != nc:
        names = [f"class{i}" for i in range(nc)]
    strides = tuple(int(round(s)) for s in _tensor_list(getattr(model, "stride", None)))
    imgsz, imgsz_from = trained_imgsz(ckpt)
    num_anchors = _anchors_per_cell(ckpt) if ckpt.family == "yolov5" else 1
    return ModelSpec(
        names=tuple(names),
        head_format="v5" if ckpt.family == "yolov5" else ("e2e" if is_end2end(ckpt) else "v8"),
        stride=max(strides),
        strides=strides,
        imgsz=imgsz,
        imgsz_from=imgsz_from,
        num_anchors=num_anchors,
        source=ckpt.path,
        sha256=sha256,
        family=ckpt.family,
        writer=_writer(ckpt),
        provenance=checkpoint_provenance(ckpt),
    )




def build_model(ckpt: Checkpoint, fuse: bool = True, sha256: str = "", head_branch: str | None = None) -> BuiltModel:
    """Checkpoint → our fp32 ``YoloNet`` in eval mode with the checkpoint's weights, plus its spec.

    ``head_branch`` (end-to-end checkpoints only): "one2one" (the default, as the checkpoint runs: top-k) or "one2many"
    (the NMS head trained beside it)."""
    e2e = is_end2end(ckpt)
    if head_branch is not None and head_branch not in HEAD_BRANCHES:
        raise UnsupportedModuleError(ckpt.path, f"--head must be one of {', '.join(HEAD_BRANCHES)}, got '{head_branch}'")
    if head_branch == "one2one" and not e2e:
        raise UnsupportedModuleError(ckpt.path, "this checkpoint has no one-to-one (end-to-end) head; only end-to-end "
                                                "checkpoints (YOLOv10, YOLO26) have one")
    net = build_net(ckpt)
    load_weights(net, ckpt)
    _apply_checkpoint_numerics(net, ckpt)
    net = net.float().eval()
    if fuse:
        net.fuse()
    for p in net.parameters():
        p.requires_grad_(False)
    spec = spec_from_checkpoint(ckpt, sha256=sha256)
    if e2e:
        branch = head_branch or "one2one"
        net.model[-1].head_branch = branch
        spec = spec.replace(head_format="e2e" if branch == "one2one" else "v8", head_branch=branch)
    return BuiltModel(net=net, spec=spec)

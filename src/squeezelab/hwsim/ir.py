"""The layer IR: conv / FC layers (PE-array work) and zero-PE-cycle ops, traced from any model.

hwsim.md §3.2. A forward pass at the requested input size (batch 1) records
every ``nn.Conv2d`` and ``nn.Linear`` through forward hooks, with the padded
input size SCALE-Sim expects; pooling, normalisation, activations and the
functional element-wise adds / concatenations are recorded as zero-cycle ops.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Union

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import SqueezelabError
from ..models import create_model, get_model_entry

InputSize = Union[int, tuple[int, int]]

PE_KINDS = ("conv", "dwconv", "gconv", "fc")


@dataclass(frozen=True)
class LayerSpec:
    """One layer: a convolution (FC is a 1x1 conv on a 1x1 map) or a zero-PE-cycle op.

    ``height``/``width`` are the padded input sizes, ``in_height``/``in_width`` the
    unpadded ones; ``out_height``/``out_width`` are E and F. For zero-cycle ops only
    ``name``, ``stage``, ``kind`` and ``elements`` (output elements) are meaningful.
    """

    name: str
    stage: str
    kind: str
    height: int = 1
    width: int = 1
    channels: int = 1
    filters: int = 1
    kernel_h: int = 1
    kernel_w: int = 1
    stride_h: int = 1
    stride_w: int = 1
    groups: int = 1
    out_height: int = 1
    out_width: int = 1
    in_height: int = 1
    in_width: int = 1
    elements: int = 0

    @property
    def is_pe(self) -> bool:
        return self.kind in PE_KINDS

    @property
    def P(self) -> int:
        """Output pixels E*F."""
        return self.out_height * self.out_width

    @property
    def K(self) -> int:
        """Window size R*S*C/g of one group."""
        return self.kernel_h * self.kernel_w * (self.channels // self.groups)

    @property
    def Q(self) -> int:
        """Filters of one group, M/g."""
        return self.filters // self.groups

    @property
    def macs(self) -> int:
        return self.groups * self.P * self.K * self.Q if self.is_pe else 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def conv(cls, name: str, height: int, width: int, kernel_h: int, kernel_w: int, channels: int, filters: int,
             stride: int = 1, groups: int = 1, stage: str = "") -> "LayerSpec":
        """A conv on a padded ``height`` x ``width`` input, output size as SCALE-Sim computes it (ceil)."""
        out_h = math.ceil((height - kernel_h + stride) / stride)
        out_w = math.ceil((width - kernel_w + stride) / stride)
        if out_h < 1 or out_w < 1:
            raise SqueezelabError(f"layer {name}: a {kernel_h}x{kernel_w} kernel does not fit a {height}x{width} input")
        if channels % groups or filters % groups:
            raise SqueezelabError(f"layer {name}: channels {channels} and filters {filters} must divide by groups {groups}")
        kind = "conv" if groups == 1 else ("dwconv" if groups == channels else "gconv")
        if height == width == kernel_h == kernel_w == 1:
            kind = "fc" if groups == 1 else kind
        return cls(name=name, stage=stage or name, kind=kind, height=height, width=width, channels=channels,
                   filters=filters, kernel_h=kernel_h, kernel_w=kernel_w, stride_h=stride, stride_w=stride,
                   groups=groups, out_height=out_h, out_width=out_w, in_height=height, in_width=width,
                   elements=filters * out_h * out_w)


def _first_conv_channels(model: nn.Module) -> int:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    in_chans = getattr(model, "in_chans", None)
    if isinstance(in_chans, int):
        return in_chans
    raise SqueezelabError(f"{type(model).__name__} has no nn.Conv2d to take the input channels from; "
                          "the simulator traces image models")


def _padding_total(module: nn.Conv2d, dim: int) -> int:
    if module.padding == "valid":
        return 0
    if module.padding == "same":
        return module.dilation[dim] * (module.kernel_size[dim] - 1)
    return 2 * module.padding[dim]


class _Namer:
    """Readable layer names from ``paper_layer_names()`` (longest matching module-path prefix)."""

    def __init__(self, model: nn.Module) -> None:
        names = model.paper_layer_names() if hasattr(model, "paper_layer_names") else {}
        self.paper: dict[str, str] = dict(names)
        self.seen: dict[str, int] = {}

    def __call__(self, path: str, suffix: str = "") -> tuple[str, str]:
        parts = path.split(".") if path else []
        base, rest = None, parts
        for i in range(len(parts), 0, -1):
            prefix = ".".join(parts[:i])
            if prefix in self.paper:
                base, rest = self.paper[prefix], parts[i:]
                break
        segments = ([base] if base else []) + rest
        if len(segments) > 1 and segments[-1] == "conv":
            segments = segments[:-1]
        name = "/".join(segments) or "input"
        stage = name.split("/")[0] if base else (parts[0] if parts else "input")
        if suffix:
            name = f"{name}/{suffix}"
        count = self.seen.get(name, 0) + 1
        self.seen[name] = count
        return (name if count == 1 else f"{name}#{count}"), stage


_ZERO_MODULES: tuple[tuple[type, str], ...] = (
    (nn.modules.pooling._MaxPoolNd, "pool"), (nn.modules.pooling._AvgPoolNd, "pool"),
    (nn.modules.pooling._AdaptiveAvgPoolNd, "pool"), (nn.modules.pooling._AdaptiveMaxPoolNd, "pool"),
    (nn.modules.batchnorm._BatchNorm, "norm"), (nn.ReLU, "act"), (nn.ReLU6, "act"), (nn.SiLU, "act"),
    (nn.Hardswish, "act"), (nn.Sigmoid, "act"), (nn.GELU, "act"), (nn.LeakyReLU, "act"), (nn.Softmax, "act"),
)

_FUNCTIONAL_KINDS = {
    "add": "eltwise", "add_": "eltwise", "__add__": "eltwise", "__iadd__": "eltwise", "__radd__": "eltwise",
    "mul": "eltwise", "mul_": "eltwise", "__mul__": "eltwise", "__imul__": "eltwise",
    "cat": "concat", "concat": "concat",
    "relu": "act", "relu_": "act", "max_pool2d": "pool", "avg_pool2d": "pool", "adaptive_avg_pool2d": "pool",
}


class _FunctionalOps(TorchFunctionMode):
    """Records element-wise adds, concatenations and functional activations outside leaf modules."""

    def __init__(self, record: Callable[[str, torch.Tensor], None], inside_leaf: Callable[[], bool]) -> None:
        super().__init__()
        self.record, self.inside_leaf = record, inside_leaf

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 (torch protocol)
        out = func(*args, **(kwargs or {}))
        kind = _FUNCTIONAL_KINDS.get(getattr(func, "__name__", ""))
        if kind and isinstance(out, torch.Tensor) and not self.inside_leaf():
            self.record(kind, out)
        return out


def trace_layers(model: nn.Module, input_size: InputSize) -> list[LayerSpec]:
    """Every conv / FC layer and zero-cycle op of ``model`` in execution order, for one image of ``input_size``."""
    height, width = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if min(height, width) < 1:
        raise SqueezelabError(f"input size {input_size!r} must be positive")
    channels = _first_conv_channels(model)
    namer = _Namer(model)
    layers: list[LayerSpec] = []
    stack: list[str] = []
    leaf_depth = [0]
    paths = {module: path for path, module in model.named_modules()}

    def conv_hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        path = paths[module]
        name, stage = namer(path)
        x = inputs[0]
        if isinstance(module, nn.Conv2d):
            h, w = (int(d) for d in x.shape[-2:])
            out_h, out_w = (int(d) for d in output.shape[-2:])
            groups = module.groups
            kind = "conv" if groups == 1 else ("dwconv" if groups == module.in_channels else "gconv")
            layers.append(LayerSpec(
                name=name, stage=stage, kind=kind, height=h + _padding_total(module, 0),
                width=w + _padding_total(module, 1), channels=module.in_channels, filters=module.out_channels,
                kernel_h=module.kernel_size[0], kernel_w=module.kernel_size[1], stride_h=module.stride[0],
                stride_w=module.stride[1], groups=groups, out_height=out_h, out_width=out_w, in_height=h,
                in_width=w, elements=int(output.numel())))
        else:
            rows = x.numel() // module.in_features
            layers.append(LayerSpec(name=name, stage=stage, kind="fc", channels=module.in_features,
                                    filters=module.out_features, out_height=rows, in_height=rows,
                                    height=rows, elements=output.numel()))

    def zero_hook(kind: str) -> Callable:
        def hook(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            name, stage = namer(paths[module])
            layers.append(LayerSpec(name=name, stage=stage, kind=kind, elements=int(output.numel())))
        return hook

    def record_functional(kind: str, out: torch.Tensor) -> None:
        name, stage = namer(stack[-1] if stack else "", suffix=kind)
        layers.append(LayerSpec(name=name, stage=stage, kind=kind, elements=int(out.numel())))

    def push(module: nn.Module, _inputs: tuple) -> None:
        stack.append(paths[module])
        if not any(True for _ in module.children()):
            leaf_depth[0] += 1

    def pop(module: nn.Module, _inputs: tuple, _output: object) -> None:
        stack.pop()
        if not any(True for _ in module.children()):
            leaf_depth[0] -= 1

    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(push))
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            handles.append(module.register_forward_hook(conv_hook))
        else:
            kind = next((k for cls, k in _ZERO_MODULES if isinstance(module, cls)), None)
            if kind:
                handles.append(module.register_forward_hook(zero_hook(kind)))
        handles.append(module.register_forward_hook(pop))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _FunctionalOps(record_functional, lambda: leaf_depth[0] > 0):
            model(torch.zeros(1, channels, height, width, device=_device(model)))
    except RuntimeError as exc:
        raise SqueezelabError(f"{type(model).__name__} cannot run at input size {height}x{width} "
                              f"({str(exc).splitlines()[0]}); try a larger --input-size") from None
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not any(layer.is_pe for layer in layers):
        raise SqueezelabError(f"{type(model).__name__} has no conv or linear layer to simulate")
    return layers


def pe_layers(layers: list[LayerSpec]) -> list[LayerSpec]:
    return [layer for layer in layers if layer.is_pe]


def zero_cycle_ops(layers: list[LayerSpec]) -> list[LayerSpec]:
    return [layer for layer in layers if not layer.is_pe]


def model_layers(model: Union[str, nn.Module], input_size: Optional[InputSize],
                 overrides: Optional[dict] = None) -> tuple[str, tuple[int, int], list[LayerSpec]]:
    """(label, (H, W), layers) for a zoo name, a torchvision classification model name or a module.

    Named models default to their design input size (torchvision: 224); ``overrides``
    go to the zoo's ``create_model`` (e.g. ``conv10_padding=1`` for Caffe SqueezeNet v1.0).
    """
    if isinstance(model, str):
        name, default_size = _resolve_name(model)
        hw = _hw(input_size if input_size is not None else default_size)
        key = tuple(sorted((overrides or {}).items()))
        label = name + "".join(f" {k}={v}" for k, v in key)
        return label, hw, list(_named_layers(name, hw, key))
    if not isinstance(model, nn.Module):
        raise SqueezelabError(f"model must be a zoo name or an nn.Module, not {type(model).__name__}")
    if input_size is None:
        raise SqueezelabError("input_size is required for a user nn.Module, e.g. simulate(model, 224, 'default')")
    hw = _hw(input_size)
    return type(model).__name__, hw, trace_layers(model, hw)


def _resolve_name(name: str) -> tuple[str, int]:
    """Canonical name and default input size: the zoo first, then torchvision classification models."""
    try:
        entry = get_model_entry(name)
        return entry.name, entry.input_size
    except SqueezelabError as exc:
        import torchvision

        if name in torchvision.models.list_models(module=torchvision.models):
            return f"torchvision:{name}", 224
        raise SqueezelabError(f"{exc} (torchvision classification names like alexnet work too)") from None


def _hw(size: InputSize) -> tuple[int, int]:
    if isinstance(size, bool):
        raise SqueezelabError(f"input size {size!r} must be an int or (H, W)")
    if isinstance(size, int):
        return size, size
    try:
        h, w = size
        return int(h), int(w)
    except (TypeError, ValueError):
        raise SqueezelabError(f"input size {size!r} must be an int or (H, W)") from None


_LAYER_CACHE: dict[tuple, tuple[LayerSpec, ...]] = {}


def _named_layers(name: str, hw: tuple[int, int], overrides: tuple) -> tuple[LayerSpec, ...]:
    """Traced IR of a named model, cached: its layers depend only on the name, overrides and input size."""
    key = (name, hw, overrides)
    if key not in _LAYER_CACHE:
        if name.startswith("torchvision:"):
            import torchvision

            if overrides:
                raise SqueezelabError("model overrides apply to zoo models only")
            model = torchvision.models.get_model(name.split(":", 1)[1], weights=None)
        else:
            model = create_model(name, **dict(overrides))
        _LAYER_CACHE[key] = tuple(trace_layers(model, hw))
    return _LAYER_CACHE[key]


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")

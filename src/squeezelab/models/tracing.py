"""The layer trace: every layer of a model in execution order, with its shapes and MACs.

One function, :func:`trace`, runs the model once on a batch of **zero** images (the
shapes of one image, no arithmetic: PyTorch's kernels return at once on empty
tensors) and records, through forward hooks:

- every ``nn.Conv2d`` and ``nn.Linear`` (the PE-array work: ``conv``, ``dwconv``,
  ``gconv``, ``fc``) with the padded input size SCALE-Sim expects (hwsim.md §3.2);
- pooling, normalisation and activation modules, and the functional adds,
  concatenations and activations outside them (zero PE cycles: ``pool``, ``norm``,
  ``act``, ``eltwise``, ``concat``, the last two through a ``TorchFunctionMode``);
- any other leaf module holding parameters (``other``);
- every unit the model names that holds layers (``block``: a Fire module, a
  SqueezeNext block or stage), with its own input and output shapes.

Counting (``squeezelab.analysis.count_macs``), the per-layer profile
(``squeezelab.analysis.profile``) and the accelerator simulator
(``squeezelab.hwsim.simulate``) are views of this list; no other module traces.
Layer names come from the model (:meth:`ClassifierModel.layer_names`, the Caffe
prototxt names such as ``fire2/squeeze1x1``); a module the model does not name is
called by its longest named parent plus the rest of its path, or by its path
(``features/0``) in models that name nothing.

:func:`trace_model` traces a model by name (``"sqnxt23v5_w1:depths=[2,4,14,1]"``,
:func:`squeezelab.models.resolve_model`), once per name, keywords and input size.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Callable, Hashable, Iterable, Optional, Union

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import SqueezelabError
from ._base import ClassifierModel
from .registry import get_model_entry
from .spec import ModelSpec, resolve_model

InputSize = Union[int, tuple[int, int]]

PE_KINDS = ("conv", "dwconv", "gconv", "fc")
ZERO_CYCLE_KINDS = ("pool", "norm", "act", "eltwise", "concat")
#: A unit the model names (Fire module, SqueezeNext block, stage); its layers follow it in the trace.
BLOCK = "block"
#: A leaf module with parameters that is none of the kinds above (a profile row; nothing to simulate).
OTHER = "other"


@dataclass(frozen=True)
class LayerSpec:
    """One traced layer: a convolution (FC is a 1x1 conv on a 1x1 map), a zero-PE-cycle op or a block.

    ``height``/``width`` are the padded input sizes, ``in_height``/``in_width`` the
    unpadded ones; ``out_height``/``out_width`` are E and F. For other kinds only
    ``name``, ``stage``, ``kind``, the shapes and ``elements`` (output elements) are meaningful.
    ``path`` is the module's path in the model (the enclosing module's for a functional op),
    ``module`` its class name ("" for a functional op); shapes are of one image (no batch
    dimension) and ``element_bytes`` is the output's element size.
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
    path: str = ""
    module: str = ""
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()
    element_bytes: int = 4

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
        """Multiply-accumulates of one image (0 for anything but a conv / FC layer)."""
        return self.groups * self.P * self.K * self.Q if self.is_pe else 0

    @property
    def geometry(self) -> tuple[int | str, ...]:
        """Everything but the names: two layers with the same geometry cost the same on any accelerator."""
        return (self.kind, self.height, self.width, self.channels, self.filters, self.kernel_h, self.kernel_w,
                self.stride_h, self.stride_w, self.groups, self.out_height, self.out_width, self.in_height,
                self.in_width)

    @classmethod
    def from_geometry(cls, geometry: tuple[int | str, ...]) -> "LayerSpec":
        """An unnamed layer of ``geometry`` (:attr:`geometry`'s inverse)."""
        return cls("", "", *geometry)

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
        kind = _conv_kind(groups, channels)
        if height == width == kernel_h == kernel_w == 1:
            kind = "fc" if groups == 1 else kind
        return cls(name=name, stage=stage or name, kind=kind, height=height, width=width, channels=channels,
                   filters=filters, kernel_h=kernel_h, kernel_w=kernel_w, stride_h=stride, stride_w=stride,
                   groups=groups, out_height=out_h, out_width=out_w, in_height=height, in_width=width,
                   elements=filters * out_h * out_w, input_shape=(channels, height, width),
                   output_shape=(filters, out_h, out_w))


def pe_layers(layers: list[LayerSpec]) -> list[LayerSpec]:
    """The conv / FC layers: the work of a PE array."""
    return [layer for layer in layers if layer.is_pe]


def zero_cycle_ops(layers: list[LayerSpec]) -> list[LayerSpec]:
    """Pooling, normalisation, activations, adds and concatenations: no PE-array cycles."""
    return [layer for layer in layers if layer.kind in ZERO_CYCLE_KINDS]


def input_hw(size: InputSize) -> tuple[int, int]:
    """An int side or an (H, W) pair as (H, W) of positive ints."""
    if isinstance(size, bool):
        raise SqueezelabError(f"input size {size!r} must be an int or (H, W)")
    if isinstance(size, int):
        height, width = size, size
    else:
        try:
            height, width = (int(v) for v in size)
        except (TypeError, ValueError):
            raise SqueezelabError(f"input size {size!r} must be an int or (H, W)") from None
    if min(height, width) < 1:
        raise SqueezelabError(f"input size {size!r} must be positive")
    return height, width


def _conv_kind(groups: int, in_channels: int) -> str:
    return "conv" if groups == 1 else ("dwconv" if groups == in_channels else "gconv")


def _padding_total(module: nn.Conv2d, dim: int) -> int:
    if module.padding == "valid":
        return 0
    if module.padding == "same":
        return module.dilation[dim] * (module.kernel_size[dim] - 1)
    return 2 * module.padding[dim]  # type: ignore[index]


_MODULE_KINDS: tuple[tuple[type, str], ...] = (
    (nn.Conv2d, "conv"), (nn.Linear, "fc"),
    (nn.modules.pooling._MaxPoolNd, "pool"), (nn.modules.pooling._AvgPoolNd, "pool"),
    (nn.modules.pooling._AdaptiveAvgPoolNd, "pool"), (nn.modules.pooling._AdaptiveMaxPoolNd, "pool"),
    (nn.modules.batchnorm._BatchNorm, "norm"), (nn.LayerNorm, "norm"), (nn.GroupNorm, "norm"),
    (nn.modules.instancenorm._InstanceNorm, "norm"), (nn.LocalResponseNorm, "norm"),
    (nn.ReLU, "act"), (nn.ReLU6, "act"), (nn.SiLU, "act"), (nn.Hardswish, "act"), (nn.Hardsigmoid, "act"),
    (nn.Sigmoid, "act"), (nn.GELU, "act"), (nn.LeakyReLU, "act"), (nn.Softmax, "act"),
)

_FUNCTIONAL_KINDS = {
    "add": "eltwise", "add_": "eltwise", "__add__": "eltwise", "__iadd__": "eltwise", "__radd__": "eltwise",
    "mul": "eltwise", "mul_": "eltwise", "__mul__": "eltwise", "__imul__": "eltwise",
    "cat": "concat", "concat": "concat",
    "relu": "act", "relu_": "act", "max_pool2d": "pool", "avg_pool2d": "pool", "adaptive_avg_pool2d": "pool",
}


_KIND_BY_TYPE: dict[type, Optional[str]] = {}


def _module_kind(module: nn.Module, is_leaf: bool) -> Optional[str]:
    cls = type(module)
    if cls not in _KIND_BY_TYPE:
        _KIND_BY_TYPE[cls] = next((k for base, k in _MODULE_KINDS if issubclass(cls, base)), None)
    kind = _KIND_BY_TYPE[cls]
    if kind is None and is_leaf and module._parameters:
        return OTHER
    return kind


class _Namer:
    """Names from a model's :meth:`~ClassifierModel.layer_names`: a module's own, else its longest named
    parent's plus the rest of its path, else its path (``features/0``)."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        self.seen: dict[str, int] = {}

    def __call__(self, path: str) -> tuple[str, str]:
        """(name, stage) of the module at ``path``; the stage is the name's first segment."""
        if path in self.names:
            name = self.names[path]
            return name, name.split("/")[0]
        parts = path.split(".") if path else []
        for cut in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:cut])
            if prefix in self.names:
                base = self.names[prefix]
                return base + "/" + "/".join(parts[cut:]), base.split("/")[0]
        return ("/".join(parts), parts[0]) if parts else ("input", "input")

    def unique(self, name: str) -> str:
        """``name``, or ``name#k`` for its k-th use (a module called twice, two adds in one block)."""
        count = self.seen.get(name, 0) + 1
        self.seen[name] = count
        return name if count == 1 else f"{name}#{count}"


def _named(raw: LayerSpec, name: str, stage: str, path: str) -> LayerSpec:
    """A copy of the unnamed ``raw`` with its name, stage and path (a plain field copy: the trace makes
    hundreds of these, and ``dataclasses.replace`` would run ``__init__`` on every field)."""
    layer = object.__new__(LayerSpec)
    layer.__dict__.update(raw.__dict__, name=name, stage=stage, path=path)
    return layer


def name_layers(records: Iterable[tuple[str, LayerSpec]], names: dict[str, str]) -> list[LayerSpec]:
    """Name unnamed trace records, given as (module path, record): the one naming rule of every trace.

    A module record takes its module's name, a functional op its enclosing module's name plus
    ``/kind`` (``fire2/concat``); a name used again gets ``#k``; blocks keep their own name.
    """
    namer = _Namer(names)
    layers = []
    for path, raw in records:
        name, stage = namer(path)
        if not raw.module:
            name = f"{name}/{raw.kind}"
        layers.append(_named(raw, name if raw.kind == BLOCK else namer.unique(name), stage, path))
    return layers


class _FunctionalOps(TorchFunctionMode):
    """Records element-wise adds, concatenations and functional activations in a model's own code.

    Leaf modules pause it while they run (from their forward hooks): what happens inside a conv or a
    ReLU is that module's record, and the trace's bookkeeping then runs without the mode's overhead.
    """

    def __init__(self, record: Callable[[str, torch.Tensor], None]) -> None:
        super().__init__()
        self.record = record
        self.active = False

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 (torch protocol)
        out = func(*args, **(kwargs or {}))
        kind = _FUNCTIONAL_KINDS.get(getattr(func, "__name__", ""))
        if kind and isinstance(out, torch.Tensor):
            self.record(kind, out)
        return out

    def resume(self) -> None:
        if not self.active:
            self.__enter__()
            self.active = True

    def pause(self) -> None:
        if self.active:
            self.__exit__(None, None, None)
            self.active = False


def _first_tensor(value: object) -> Optional[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        return next((v for v in value if isinstance(v, torch.Tensor)), None)
    return None


def _shape(tensor: Optional[torch.Tensor]) -> tuple[int, ...]:
    return tuple(tensor.shape)[1:] if tensor is not None else ()


def _layer_record(kind: str, module: nn.Module, x: Optional[torch.Tensor], out: torch.Tensor) -> LayerSpec:
    """The unnamed record of one module call (``x`` its first input, ``out`` its first output)."""
    out_shape = _shape(out)
    common = dict(name="", stage="", module=type(module).__name__, input_shape=_shape(x), output_shape=out_shape,
                  elements=math.prod(out_shape), element_bytes=out.element_size())
    if kind == "conv" and x is not None:
        h, w = x.shape[-2:]
        out_h, out_w = out.shape[-2:]
        return LayerSpec(
            kind=_conv_kind(module.groups, module.in_channels), height=h + _padding_total(module, 0),
            width=w + _padding_total(module, 1), channels=module.in_channels, filters=module.out_channels,
            kernel_h=module.kernel_size[0], kernel_w=module.kernel_size[1], stride_h=module.stride[0],
            stride_w=module.stride[1], groups=module.groups, out_height=out_h, out_width=out_w, in_height=h,
            in_width=w, **common)
    if kind == "fc" and x is not None:
        rows = math.prod(_shape(x)[:-1])  # Linear acts on the last dimension; one row for (N, features)
        return LayerSpec(kind="fc", channels=module.in_features, filters=module.out_features, out_height=rows,
                         in_height=rows, height=rows, **common)
    return LayerSpec(kind=kind, **common)


def _block_record(module_type: str, input_shape: tuple[int, ...], output_shape: tuple[int, ...],
                  element_bytes: int) -> LayerSpec:
    return LayerSpec(name="", stage="", kind=BLOCK, module=module_type, input_shape=input_shape,
                     output_shape=output_shape, elements=math.prod(output_shape), element_bytes=element_bytes)


def _run(model: nn.Module, x: torch.Tensor, blocks: set[str]) -> tuple[list[tuple[str, LayerSpec]], torch.Tensor]:
    """(path, unnamed record) of every module call and functional op in one run of ``model`` on ``x``,
    and the output. Containers whose path is in ``blocks`` get a block record before their layers."""
    records: list[Optional[tuple[str, LayerSpec]]] = []
    stack: list[str] = []
    open_blocks: dict[str, list[int]] = {}

    def record_functional(kind: str, out: torch.Tensor) -> None:  # runs with the mode off (PyTorch pops it)
        shape = _shape(out)
        records.append((stack[-1] if stack else "", LayerSpec(
            name="", stage="", kind=kind, output_shape=shape, elements=math.prod(shape),
            element_bytes=out.element_size())))

    mode = _FunctionalOps(record_functional)

    def enter(path: str, is_leaf: bool, is_block: bool) -> Callable:
        def hook(_module: nn.Module, _inputs: tuple) -> None:
            stack.append(path)
            if is_leaf:
                mode.pause()
            if is_block:  # a placeholder keeps the block before its layers; filled when the block returns
                open_blocks.setdefault(path, []).append(len(records))
                records.append(None)
        return hook

    def leave(path: str, is_leaf: bool, kind: Optional[str], is_block: bool) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: object) -> None:
            was_active = mode.active
            mode.pause()
            stack.pop()
            out = _first_tensor(output)
            if out is not None and kind is not None:
                records.append((path, _layer_record(kind, module, _first_tensor(inputs), out)))
            if is_block:
                index = open_blocks[path].pop()
                if out is not None:
                    x = _first_tensor(inputs)
                    records[index] = (path, _block_record(type(module).__name__, _shape(x), _shape(out),
                                                          out.element_size()))
            if was_active or is_leaf:
                mode.resume()
        return hook

    handles = []
    for path, module in model.named_modules():
        is_leaf = not module._modules
        kind = _module_kind(module, is_leaf)
        is_block = not is_leaf and path in blocks
        handles.append(module.register_forward_pre_hook(enter(path, is_leaf, is_block)))
        handles.append(module.register_forward_hook(leave(path, is_leaf, kind, is_block)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            mode.resume()
            out = model(x)
    finally:
        mode.pause()
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return [record for record in records if record is not None], out


def input_channels(model: nn.Module) -> int:
    """The input channels a model takes: ``ClassifierModel.in_chans``, else its first convolution's."""
    if isinstance(model, ClassifierModel):
        return model.in_chans
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    raise SqueezelabError(f"{type(model).__name__} has no nn.Conv2d to take the input channels from; "
                          "pass in_chans= (the trace runs image models)")


def _empty_batch(model: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    """A batch of zero images of ``shape`` on the model's device, in its floating-point type."""
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    return torch.zeros(0, *shape, device=device, dtype=dtype)


def trace(model: nn.Module, input_size: InputSize, in_chans: Optional[int] = None) -> list[LayerSpec]:
    """Every layer, zero-cycle op and named block of ``model`` in execution order, for images of ``input_size``.

    ``in_chans`` defaults to the model's (``ClassifierModel.in_chans``, else its first conv's).
    The model runs once in eval mode on an empty batch; its training mode is restored.
    """
    height, width = input_hw(input_size)
    channels = in_chans if in_chans is not None else input_channels(model)
    names = model.layer_names() if isinstance(model, ClassifierModel) else {}
    try:
        records, _ = _run(model, _empty_batch(model, (channels, height, width)), set(names))
    except RuntimeError as exc:
        raise SqueezelabError(f"{type(model).__name__} cannot run at input size {height}x{width} "
                              f"({str(exc).splitlines()[0]}); try a larger input size") from None
    return name_layers(records, names)


#: Part traces kept by (part key, input shape); see :func:`trace_part`.
PART_CACHE_SIZE = 4096


def trace_part(path: str, key: Hashable, build: Callable[[], nn.Module], input_shape: tuple[int, ...],
               block: bool = False) -> tuple[list[tuple[str, LayerSpec]], tuple[int, ...]]:
    """The unnamed records of one part of a model (a module that runs on its own, e.g. a SqueezeNext
    block) placed at ``path``, and the part's output shape, for inputs of ``input_shape`` (no batch).

    ``key`` identifies what ``build`` builds: the part is built and run once per (key, input shape) and
    its records reused, so a model assembled from parts (:func:`name_layers` names them) is traced
    without being built. ``block`` adds a block record for the part itself; containers inside a part
    are never blocks.
    """
    records, output_shape, module_type, element_bytes = _cached_part(key, build, input_shape)
    placed = [(f"{path}.{inner}" if inner else path, raw) for inner, raw in records]
    if block:
        placed.insert(0, (path, _block_record(module_type, input_shape, output_shape, element_bytes)))
    return placed, output_shape


def block_record(path: str, module_type: str, input_shape: tuple[int, ...], output_shape: tuple[int, ...],
                 element_bytes: int = 4) -> tuple[str, LayerSpec]:
    """The unnamed block record of a named container assembled from parts (a SqueezeNext stage)."""
    return path, _block_record(module_type, input_shape, output_shape, element_bytes)


_PART_CACHE: dict[tuple[Hashable, tuple[int, ...]], tuple] = {}


def _cached_part(key: Hashable, build: Callable[[], nn.Module], input_shape: tuple[int, ...]
                 ) -> tuple[tuple[tuple[str, LayerSpec], ...], tuple[int, ...], str, int]:
    """(records with paths inside the part, output shape, part class name, output element bytes), cached
    by (key, input shape): ``build`` is not part of the key (a new closure on every call)."""
    cache_key = (key, input_shape)
    if cache_key not in _PART_CACHE:
        part = build()
        records, out = _run(part, _empty_batch(part, input_shape), set())
        if len(_PART_CACHE) >= PART_CACHE_SIZE:
            _PART_CACHE.clear()
        _PART_CACHE[cache_key] = (tuple(records), _shape(out), type(part).__name__, out.element_size())
    return _PART_CACHE[cache_key]


@dataclass(frozen=True)
class TracedModel:
    """A named model's trace: what was built (``spec``), at which input size, and its layers."""

    spec: ModelSpec
    input_size: tuple[int, int]
    layers: tuple[LayerSpec, ...]

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)


#: Traces kept by (model, keywords, input size): a design search revisits each model on many accelerators.
TRACE_CACHE_SIZE = 512


def trace_model(model: Union[str, ModelSpec], input_size: Optional[InputSize] = None, **kwargs: Any) -> TracedModel:
    """The trace of a named model (``"sqnxt23v5_w1"``, ``"sqnxt23v5_w1:depths=[2,4,14,1]"``, ``"alexnet"``).

    The model defaults to its design input size; ``kwargs`` go to its builder with the name's own.
    Traces are cached (:data:`TRACE_CACHE_SIZE` entries). A zoo model registered with a ``tracer``
    (SqueezeNext) is traced from its parts, without building it; any other is built and traced.
    """
    if isinstance(model, ModelSpec):
        spec = resolve_model(model.label, **kwargs) if kwargs else model
    else:
        spec = resolve_model(model, **kwargs)
    size = input_hw(input_size if input_size is not None else spec.input_size)
    return TracedModel(spec, size, _cached_trace(spec, size))


@lru_cache(maxsize=TRACE_CACHE_SIZE)
def _cached_trace(spec: ModelSpec, size: tuple[int, int]) -> tuple[LayerSpec, ...]:
    tracer = get_model_entry(spec.name).tracer if spec.source == "zoo" else None
    if tracer is None:
        return tuple(trace(spec.build(), size))
    try:
        return tuple(tracer(size, **dict(spec.kwargs)))
    except (TypeError, ValueError) as exc:
        raise SqueezelabError(f"bad option for model {spec.name!r}: {exc}") from None

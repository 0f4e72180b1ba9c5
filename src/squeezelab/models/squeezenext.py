"""SqueezeNext, exact to the official Caffe prototxt files.

Gholami et al., "SqueezeNext: Hardware-Aware Neural Network Design", CVPR
Workshops 2018 (arXiv 1803.10615); prototxt from amirgholami/SqueezeNext.

Layout (``features``): ``stem`` 7x7/2 (5x5/2 for v5) conv, pad 0, 64 filters
-> ``pool1`` max 3/2 ceil -> ``stage1``..``stage4`` of SqueezeNext blocks ->
``conv_final`` 1x1 to 128; then global average pool and a bias-free FC
(Figure 3). Every convolution is bias-free and followed by BN and ReLU.

Block (Figure 2) with C output channels: 1x1 -> C/2, 1x1 -> C/4, 3x1 and 1x3
(order alternating from block to block) -> C/2, 1x1 -> C, output
ReLU(main + shortcut). The first block of a stage has a 1x1 projection
shortcut (stride s) and its first 1x1 carries the stride. v5 blocks put the
projection first: its output is both the skip and the block input.

Beyond the registered variants, :class:`SqueezeNext` takes the design choices of
§6 and of a hardware-aware search as keywords (``create_model("sqnxt23v5_w1",
depths=(2, 4, 12, 3), width=(1, 1, 1.5, 2))``, ``squeezelab simulate
"sqnxt23v5_w1:depths=[2,4,12,3]"``): blocks per stage, width per stage, stem
kernel, the order of the separable 3x1 / 1x3 pair, groups and the squeeze ratio.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any, Callable, Hashable, Literal, Sequence, Union

import torch
from torch import nn

from ._base import ClassifierModel, SpatialOp, check_input_shape, min_input_side
from .registry import register_model
from .tracing import LayerSpec, block_record, name_layers, trace_part

STAGE_CHANNELS = (32, 64, 128, 256)
STEM_CHANNELS = 64
HEAD_CHANNELS = 128
#: Figure 2: the first 1x1 squeezes C to C/2 (the second to C/4).
SQUEEZE_RATIO = 0.5
SeparableOrder = Literal["alternate", "3x1_first", "1x3_first"]
SEPARABLE_ORDERS = ("alternate", "3x1_first", "1x3_first")
#: Each block's conv + BN + ReLU units (module path inside the block -> Figure 2 name).
_BLOCK_UNITS = {"shortcut": "shortcut", "main.reduce1": "reduce1", "main.reduce2": "reduce2",
                "main.separable1": "separable1", "main.separable2": "separable2", "main.expand": "expand"}


class ConvBNReLU(nn.Sequential):
    """Bias-free convolution + BatchNorm + ReLU (Caffe: Convolution, BatchNorm, Scale, ReLU)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
        groups: int = 1,
    ) -> None:
        super().__init__(
            OrderedDict(
                conv=nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False),
                bn=nn.BatchNorm2d(out_channels),
                act=nn.ReLU(inplace=True),
            )
        )


class SqueezeNextBlock(nn.Module):
    """One SqueezeNext block (Figure 2).

    Args:
        in_channels, out_channels: block input and output channels (C = out_channels).
        stride: 2 on the first block of stages 2-4.
        projection: add a 1x1 projection shortcut (first block of each stage).
        projection_first: v5 layout; the projection runs first and feeds the block.
        vertical_first: run the 3x1 before the 1x3 (alternates from block to block).
        groups: 2 for the grouped G-SqNxt (on the first 1x1 and both separable convs).
        squeeze_ratio: the first 1x1 outputs C * squeeze_ratio channels, the second half that.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        projection: bool,
        projection_first: bool = False,
        vertical_first: bool = True,
        groups: int = 1,
        squeeze_ratio: float = SQUEEZE_RATIO,
    ) -> None:
        super().__init__()
        quarter_exact = out_channels * squeeze_ratio / 2
        half, quarter = int(round(2 * quarter_exact)), int(round(quarter_exact))
        if not 0 < squeeze_ratio <= 1 or quarter < 1 or quarter != quarter_exact:
            raise ValueError(f"a SqueezeNext block of {out_channels} channels needs squeeze_ratio in (0, 1] with "
                             f"{out_channels} * squeeze_ratio / 2 a whole number >= 1 (got {squeeze_ratio}); at the "
                             f"default 0.5 the channels must be a multiple of 4")
        self.projection_first = projection_first and projection
        if projection:
            self.shortcut: nn.Module = ConvBNReLU(in_channels, out_channels, 1, stride)
        else:
            if stride != 1 or in_channels != out_channels:
                raise ValueError("an identity shortcut needs stride 1 and equal channels")
            self.shortcut = nn.Identity()
        main_in, main_stride = (out_channels, 1) if self.projection_first else (in_channels, stride)
        first, second = ((3, 1), (1, 3)) if vertical_first else ((1, 3), (3, 1))
        self.main = nn.Sequential(
            OrderedDict(
                reduce1=ConvBNReLU(main_in, half, 1, main_stride, groups=groups),
                reduce2=ConvBNReLU(half, quarter, 1),
                separable1=ConvBNReLU(quarter, half, first, padding=(first[0] // 2, first[1] // 2), groups=groups),
                separable2=ConvBNReLU(half, half, second, padding=(second[0] // 2, second[1] // 2), groups=groups),
                expand=ConvBNReLU(half, out_channels, 1),
            )
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.shortcut(x)
        if self.projection_first:
            return self.act(self.main(skip) + skip)
        return self.act(self.main(x) + skip)


@dataclass(frozen=True)
class BlockConfig:
    """The arguments of one :class:`SqueezeNextBlock`."""

    in_channels: int
    out_channels: int
    stride: int
    projection: bool
    projection_first: bool
    vertical_first: bool
    groups: int
    squeeze_ratio: float

    def build(self) -> SqueezeNextBlock:
        return SqueezeNextBlock(**asdict(self))


@dataclass(frozen=True)
class SqueezeNextLayout:
    """What ``SqueezeNext(**kwargs)`` builds, as data: the conv + BN + ReLU units of the stem and the final
    1x1 conv (``ConvBNReLU`` arguments), whether pool1 is there, and every block of the four stages."""

    in_chans: int
    num_classes: int
    stem: tuple[int, int, int, int, int]
    pool: bool
    stages: tuple[tuple[BlockConfig, ...], ...]
    final: tuple[int, int, int]

    def spatial_ops(self) -> list[SpatialOp]:
        """The stem, pool1 and each stage's first (1x1, strided) projection: the size-changing layers."""
        _, _, kernel, stride, padding = self.stem
        ops = [SpatialOp(kernel, stride, padding)] + ([POOL1] if self.pool else [])
        return ops + [SpatialOp(1, stage[0].stride) for stage in self.stages]


#: pool1: Caffe's 3x3/2 max-pool, rounding up.
POOL1 = SpatialOp(3, 2, 0, ceil_mode=True, pool=True)


def _layout(depths: Sequence[int], width: Union[float, Sequence[float]], num_classes: int, in_chans: int,
            projection_first: bool, stem_kernel: int, groups: int, separable_order: str, squeeze_ratio: float,
            small_input: bool) -> SqueezeNextLayout:
    """The layout of :class:`SqueezeNext` for its constructor's arguments (checked here)."""
    if len(depths) != 4 or min(depths) < 1:
        raise ValueError(f"depths must be 4 positive block counts, got {tuple(depths)}")
    widths = (width,) * 4 if isinstance(width, (int, float)) else tuple(width)
    if len(widths) != 4 or not all(isinstance(w, (int, float)) and w > 0 for w in widths):
        raise ValueError(f"width must be a positive multiplier or 4 of them (one per stage), got {width!r}")
    if separable_order not in SEPARABLE_ORDERS:
        raise ValueError(f"separable_order must be one of {', '.join(SEPARABLE_ORDERS)}, got {separable_order!r}")
    if stem_kernel < 1:
        raise ValueError(f"stem_kernel must be >= 1, got {stem_kernel}")
    stem = (in_chans, STEM_CHANNELS, 3, 1, 1) if small_input else (in_chans, STEM_CHANNELS, stem_kernel, 2, 0)
    stages, channels, block_index = [], STEM_CHANNELS, 0
    for stage, (depth, multiplier) in enumerate(zip(depths, widths)):
        out_channels = int(round(STAGE_CHANNELS[stage] * multiplier))
        blocks = []
        for i in range(int(depth)):
            blocks.append(BlockConfig(channels, out_channels, 2 if stage > 0 and i == 0 else 1, projection=i == 0,
                                      projection_first=projection_first,
                                      vertical_first=_vertical_first(separable_order, block_index), groups=groups,
                                      squeeze_ratio=squeeze_ratio))
            channels, block_index = out_channels, block_index + 1
        stages.append(tuple(blocks))
    return SqueezeNextLayout(in_chans, num_classes, stem, not small_input, tuple(stages),
                             (channels, HEAD_CHANNELS, 1))


class SqueezeNext(ClassifierModel):
    """SqueezeNext family.

    Args:
        depths: blocks per stage, e.g. ``(6, 6, 8, 1)`` for SqNxt-23 (v1), ``(2, 4, 14, 1)`` for v5 (§6).
        width: channel multiplier of the four stages (1.0, 1.5, 2.0), or one multiplier per stage
            (stage channels ``round(32, 64, 128, 256 x width)``); the stem (64) and the final 1x1 conv (128)
            stay fixed, as in the official 2.0 prototxt.
        projection_first: the v5 block layout.
        stem_kernel: 7 (SqNxt-23) or 5 (v5); stride 2, no padding.
        groups: 2 for G-SqNxt (each block's first 1x1 and both separable convs).
        separable_order: ``"alternate"`` (the prototxts: 3x1 then 1x3 in the first block, swapped in the
            next, and so on), or the same order in every block (``"3x1_first"``, ``"1x3_first"``).
        squeeze_ratio: a block's first 1x1 outputs C * squeeze_ratio channels and its second half that
            (Figure 2: 0.5, so C/2 and C/4).
        small_input: a 3x3 stride-1 stem without the max-pool for 8-64 px images.
    """

    def __init__(
        self,
        depths: Sequence[int] = (6, 6, 8, 1),
        width: Union[float, Sequence[float]] = 1.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        projection_first: bool = False,
        stem_kernel: int = 7,
        groups: int = 1,
        separable_order: SeparableOrder = "alternate",
        squeeze_ratio: float = SQUEEZE_RATIO,
        small_input: bool = False,
    ) -> None:
        super().__init__(in_chans, num_classes)
        self.layout = _layout(depths, width, num_classes, in_chans, projection_first, stem_kernel, groups,
                              separable_order, squeeze_ratio, small_input)
        self.depths = tuple(len(stage) for stage in self.layout.stages)
        self.width = width
        layers: OrderedDict[str, nn.Module] = OrderedDict(stem=ConvBNReLU(*self.layout.stem), pool1=_pool1(self.layout))
        for stage, blocks in enumerate(self.layout.stages, start=1):
            layers[f"stage{stage}"] = nn.Sequential(*(config.build() for config in blocks))
        layers["conv_final"] = ConvBNReLU(*self.layout.final)
        self.features = nn.Sequential(layers)
        self.num_features = HEAD_CHANNELS
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = _classifier(num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)

    def spatial_ops(self) -> list[SpatialOp]:
        """The stem, pool1 and the 1x1 stride-2 convs opening stages 2-4 (the other convs keep the size)."""
        return self.layout.spatial_ops()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.global_pool(x), 1)
        return x if pre_logits else self.fc(x)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = _classifier(num_classes)
        nn.init.normal_(self.fc.weight, std=0.01)

    def layer_names(self) -> dict[str, str]:
        """Module path -> name: Figure 3's units (``conv1``, ``pool1``, ``stageS``, ``stageS/blockB``,
        ``conv_final``, ``fc``; the units holding layers are blocks) and, inside each block, Figure 2's
        layers (``shortcut``, ``reduce1``, ``reduce2``, ``separable1``, ``separable2``, ``expand``, ``relu``).

        A conv + BN + ReLU unit's convolution carries the unit's name; its BN and ReLU are ``<unit>/bn``
        and ``<unit>/relu``. (The generated Caffe prototxts number their layers instead, ``ConvolutionK``;
        the Caffe reader counts those itself.)
        """
        return _layer_names(self.layout)


def _pool1(layout: SqueezeNextLayout) -> nn.Module:
    return nn.MaxPool2d(POOL1.kernel, POOL1.stride, ceil_mode=POOL1.ceil_mode) if layout.pool else nn.Identity()


def _classifier(num_classes: int) -> nn.Linear:
    return nn.Linear(HEAD_CHANNELS, num_classes, bias=False)


def _layer_names(layout: SqueezeNextLayout) -> dict[str, str]:
    names = {"features.pool1": "pool1", "fc": "fc"}
    for path, name in (("features.stem", "conv1"), ("features.conv_final", "conv_final")):
        names[path] = name
        names.update(_unit_names(path, name))
    for s, stage in enumerate(layout.stages, start=1):
        names[f"features.stage{s}"] = f"stage{s}"
        for b, config in enumerate(stage):
            path, name = f"features.stage{s}.{b}", f"stage{s}/block{b + 1}"
            names[path] = name
            names[f"{path}.act"] = f"{name}/relu"
            for unit, unit_name in _BLOCK_UNITS.items():
                if unit != "shortcut" or config.projection:
                    names.update(_unit_names(f"{path}.{unit}", f"{name}/{unit_name}"))
    return names


def _unit_names(path: str, name: str) -> dict[str, str]:
    """A conv + BN + ReLU unit: the conv carries the unit's name."""
    return {f"{path}.conv": name, f"{path}.bn": f"{name}/bn", f"{path}.act": f"{name}/relu"}


def _vertical_first(order: str, block_index: int) -> bool:
    """Whether block ``block_index`` (counted over the whole network) runs its 3x1 before its 1x3."""
    return order == "3x1_first" or (order == "alternate" and block_index % 2 == 0)


_SIGNATURE = inspect.signature(SqueezeNext.__init__)


def trace_squeezenext(input_size: tuple[int, int], **kwargs: Any) -> list[LayerSpec]:
    """The layer trace of ``SqueezeNext(**kwargs)`` at ``input_size`` (H, W), without building the model.

    The model's parts (stem, pool1, each block, the final conv, pool and FC) run in this order, each on
    the last one's output (``forward``); each distinct part is built and traced once per input shape
    (:func:`~squeezelab.models.tracing.trace_part`), and the records are named as the model names them.
    The result equals ``trace(SqueezeNext(**kwargs), input_size)`` (tests/test_trace.py) at a fraction
    of the cost: what a hardware-aware search needs for thousands of variants.
    """
    bound = _SIGNATURE.bind(None, **kwargs)  # a TypeError for an unknown keyword, as from the constructor
    bound.apply_defaults()
    layout = _layout(**{k: v for k, v in bound.arguments.items() if k != "self"})
    height, width = input_size
    check_input_shape((0, layout.in_chans, height, width), layout.in_chans, min_input_side(layout.spatial_ops()))
    records: list[tuple[str, LayerSpec]] = []
    shape: tuple[int, ...] = (layout.in_chans, height, width)

    def add(path: str, key: Hashable, build: Callable[[], nn.Module], block: bool = False) -> None:
        nonlocal shape
        placed, shape = trace_part(path, key, build, shape, block=block)
        records.extend(placed)

    add("features.stem", ("ConvBNReLU", layout.stem), lambda: ConvBNReLU(*layout.stem), block=True)
    if layout.pool:
        add("features.pool1", POOL1, lambda: _pool1(layout))
    for s, stage in enumerate(layout.stages, start=1):
        start, stage_input = len(records), shape
        for b, config in enumerate(stage):
            add(f"features.stage{s}.{b}", config, config.build, block=True)
        records.insert(start, block_record(f"features.stage{s}", "Sequential", stage_input, shape))
    add("features.conv_final", ("ConvBNReLU", layout.final), lambda: ConvBNReLU(*layout.final), block=True)
    add("global_pool", "AdaptiveAvgPool2d(1)", lambda: nn.AdaptiveAvgPool2d(1))
    shape = (math.prod(shape),)  # forward_head's flatten
    add("fc", ("Linear", HEAD_CHANNELS, layout.num_classes), lambda: _classifier(layout.num_classes))
    return name_layers(records, _layer_names(layout))


_PAPER = "Gholami et al., SqueezeNext, CVPRW 2018 (arXiv 1803.10615)"
# Caffe models: 227 crop; the numbers in this zoo are counted at 224 and 227. Preprocessing belongs to
# each set of weights (squeezelab.weights.registry) or checkpoint, never to the architecture.
_CAFFE_CFG = {"input_size": 227}
# The SqueezeNext keywords of each registered variant (its def and its tracer use the same dict).
_V1 = dict(depths=(6, 6, 8, 1))
_V5 = dict(depths=(2, 4, 14, 1), projection_first=True, stem_kernel=5)
_V1_G = {**_V1, "groups": 2}
_V1_W1_5, _V5_W1_5 = {**_V1, "width": 1.5}, {**_V5, "width": 1.5}
_V1_W2, _V5_W2 = {**_V1, "width": 2.0}, {**_V5, "width": 2.0}
_D34 = dict(depths=(10, 10, 10, 2))
_D44 = dict(depths=(12, 12, 16, 2))
_D44_W2 = {**_D44, "width": 2.0}


def _cfg(arch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """``register_model`` keywords shared by every SqueezeNext entry (the tracer of ``SqueezeNext(**arch)``),
    plus ``kwargs``."""
    return dict(paper=_PAPER, default_cfg=_CAFFE_CFG, small_input=True,
                tracer=functools.partial(trace_squeezenext, **arch), **kwargs)


@register_model(**_cfg(_V1, aliases=("1.0-SqNxt-23",), table="Table 1; 1.0-SqNxt-23 prototxt",
                       description="1.0-SqNxt-23: depths [6,6,8,1], 7x7 stem"))
def sqnxt23_w1(**kwargs: Any) -> SqueezeNext:
    """1.0-SqNxt-23 (official prototxt): 717,280 parameters."""
    return SqueezeNext(**{**_V1, **kwargs})


@register_model(**_cfg(_V1_G, aliases=("1.0-G-SqNxt-23",), table="Table 1; 1.0-G-SqNxt-23 prototxt",
                       description="1.0-G-SqNxt-23: SqNxt-23 with groups=2 on 63 convs (112x < AlexNet)"))
def sqnxt23g_w1(**kwargs: Any) -> SqueezeNext:
    """1.0-G-SqNxt-23: groups=2 on each block's first 1x1 and both separable convs; 543,072 parameters."""
    return SqueezeNext(**{**_V1_G, **kwargs})


@register_model(**_cfg(_V5, aliases=("1.0-SqNxt-23v5",), table="Table 3, Figure 9; 1.0-SqNxt-23v5 prototxt",
                       description="1.0-SqNxt-23v5: depths [2,4,14,1], 5x5 stem, projection-first blocks"))
def sqnxt23v5_w1(**kwargs: Any) -> SqueezeNext:
    """1.0-SqNxt-23v5 (official prototxt): 930,016 parameters."""
    return SqueezeNext(**{**_V5, **kwargs})


@register_model(**_cfg(_V1_W1_5, aliases=("1.5-SqNxt-23",), table="Table 1",
                       description="1.5-SqNxt-23: SqNxt-23 with 1.5x stage widths"))
def sqnxt23_w1_5(**kwargs: Any) -> SqueezeNext:
    """1.5-SqNxt-23: 1.5x stage widths, stem and final conv kept at 64/128."""
    return SqueezeNext(**{**_V1_W1_5, **kwargs})


@register_model(**_cfg(_V5_W1_5, aliases=("1.5-SqNxt-23v5",), table="Table 3",
                       description="1.5-SqNxt-23v5: v5 with 1.5x stage widths"))
def sqnxt23v5_w1_5(**kwargs: Any) -> SqueezeNext:
    """1.5-SqNxt-23v5: 1.5x stage widths of the v5 layout."""
    return SqueezeNext(**{**_V5_W1_5, **kwargs})


@register_model(**_cfg(_V1_W2, aliases=("2.0-SqNxt-23",), table="Table 1; 2.0-SqNxt-23 prototxt",
                       description="2.0-SqNxt-23: SqNxt-23 with 2x stage widths"))
def sqnxt23_w2(**kwargs: Any) -> SqueezeNext:
    """2.0-SqNxt-23 (official prototxt): 2,361,728 parameters."""
    return SqueezeNext(**{**_V1_W2, **kwargs})


@register_model(**_cfg(_V5_W2, aliases=("2.0-SqNxt-23v5",), table="Table 3; 2.0-SqNxt-23v5 prototxt",
                       description="2.0-SqNxt-23v5: v5 with 2x stage widths (1.3x < MobileNet)"))
def sqnxt23v5_w2(**kwargs: Any) -> SqueezeNext:
    """2.0-SqNxt-23v5 (official prototxt): 3,222,912 parameters."""
    return SqueezeNext(**{**_V5_W2, **kwargs})


@register_model(**_cfg(_D34, aliases=("1.0-SqNxt-34",), table="Table 1 (depths inferred)",
                       description="1.0-SqNxt-34: depths [10,10,10,2]"))
def sqnxt34_w1(**kwargs: Any) -> SqueezeNext:
    """1.0-SqNxt-34: 32 blocks, depths [10,10,10,2]; 989,472 parameters (inferred, see docs/models.md)."""
    return SqueezeNext(**{**_D34, **kwargs})


@register_model(**_cfg(_D44, aliases=("1.0-SqNxt-44",), table="Table 1",
                       description="1.0-SqNxt-44: depths [12,12,16,2]"))
def sqnxt44_w1(**kwargs: Any) -> SqueezeNext:
    """1.0-SqNxt-44: depths [12,12,16,2] (the 2.0-SqNxt-44 template at width 1)."""
    return SqueezeNext(**{**_D44, **kwargs})


@register_model(**_cfg(_D44_W2, aliases=("2.0-SqNxt-44",), table="Table 1; abstract",
                       description="2.0-SqNxt-44: depths [12,12,16,2], 2x widths (4.4M, VGG-19 accuracy)"))
def sqnxt44_w2(**kwargs: Any) -> SqueezeNext:
    """2.0-SqNxt-44: 4,428,096 parameters (abstract: 4.4M, 31x smaller than VGG-19)."""
    return SqueezeNext(**{**_D44_W2, **kwargs})

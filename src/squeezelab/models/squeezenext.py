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
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import torch
from torch import nn

from ._base import ClassifierModel, SpatialOp, conv_op, pool_op
from .registry import register_model

STAGE_CHANNELS = (32, 64, 128, 256)
STEM_CHANNELS = 64
HEAD_CHANNELS = 128


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
    ) -> None:
        super().__init__()
        half, quarter = out_channels // 2, out_channels // 4
        if quarter < 1 or out_channels % 4:
            raise ValueError(f"SqueezeNext block channels must be a multiple of 4, got {out_channels}")
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


class SqueezeNext(ClassifierModel):
    """SqueezeNext family.

    Args:
        depths: blocks per stage, e.g. ``(6, 6, 8, 1)`` for SqNxt-23.
        width: channel multiplier of the four stages (1.0, 1.5, 2.0); the stem (64) and the
            final 1x1 conv (128) stay fixed, as in the official 2.0 prototxt.
        projection_first: the v5 block layout.
        stem_kernel: 7 (SqNxt-23) or 5 (v5).
        groups: 2 for G-SqNxt.
        small_input: a 3x3 stride-1 stem without the max-pool for 8-64 px images.
    """

    def __init__(
        self,
        depths: Sequence[int] = (6, 6, 8, 1),
        width: float = 1.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        projection_first: bool = False,
        stem_kernel: int = 7,
        groups: int = 1,
        small_input: bool = False,
    ) -> None:
        super().__init__(in_chans, num_classes)
        if len(depths) != 4 or min(depths) < 1:
            raise ValueError(f"depths must be 4 positive block counts, got {tuple(depths)}")
        self.depths = tuple(int(d) for d in depths)
        self.width = width
        stage_channels = [int(round(c * width)) for c in STAGE_CHANNELS]
        if small_input:
            stem, pool = ConvBNReLU(in_chans, STEM_CHANNELS, 3, 1, 1), nn.Identity()
        else:
            stem = ConvBNReLU(in_chans, STEM_CHANNELS, stem_kernel, 2, 0)
            pool = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
        layers: OrderedDict[str, nn.Module] = OrderedDict(stem=stem, pool1=pool)
        channels, block_index = STEM_CHANNELS, 0
        for stage, (depth, out_channels) in enumerate(zip(self.depths, stage_channels), start=1):
            blocks = []
            for i in range(depth):
                stride = 2 if (stage > 1 and i == 0) else 1
                blocks.append(
                    SqueezeNextBlock(
                        channels,
                        out_channels,
                        stride,
                        projection=i == 0,
                        projection_first=projection_first,
                        vertical_first=block_index % 2 == 0,
                        groups=groups,
                    )
                )
                channels, block_index = out_channels, block_index + 1
            layers[f"stage{stage}"] = nn.Sequential(*blocks)
        layers["conv_final"] = ConvBNReLU(channels, HEAD_CHANNELS, 1)
        self.features = nn.Sequential(layers)
        self.num_features = HEAD_CHANNELS
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(HEAD_CHANNELS, num_classes, bias=False)
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
        ops = [conv_op(self.features.stem.conv)]
        if isinstance(self.features.pool1, nn.MaxPool2d):
            ops.append(pool_op(self.features.pool1))
        stages = (self.features.stage1, self.features.stage2, self.features.stage3, self.features.stage4)
        return ops + [conv_op(stage[0].shortcut.conv) for stage in stages]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.global_pool(x), 1)
        return x if pre_logits else self.fc(x)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes, bias=False)
        nn.init.normal_(self.fc.weight, std=0.01)

    def paper_layer_names(self) -> dict[str, str]:
        """Module path -> Figure 3 name (conv1, pool1, stageS/blockB, conv_final, fc)."""
        names = {"features.stem": "conv1", "features.pool1": "pool1", "features.conv_final": "conv_final"}
        for s in range(1, 5):
            names[f"features.stage{s}"] = f"stage{s}"
            for b in range(self.depths[s - 1]):
                names[f"features.stage{s}.{b}"] = f"stage{s}/block{b + 1}"
        names["fc"] = "fc"
        return names


_PAPER = "Gholami et al., SqueezeNext, CVPRW 2018 (arXiv 1803.10615)"
# Caffe models: 227 crop; the numbers in this zoo are counted at 224 and 227. Preprocessing belongs to
# each set of weights (squeezelab.weights.registry) or checkpoint, never to the architecture.
_CAFFE_CFG = {"input_size": 227}
_V1 = dict(depths=(6, 6, 8, 1))
_V5 = dict(depths=(2, 4, 14, 1), projection_first=True, stem_kernel=5)


def _cfg(**kwargs: Any) -> dict[str, Any]:
    """``register_model`` keywords shared by every SqueezeNext entry, plus ``kwargs``."""
    return dict(paper=_PAPER, default_cfg=_CAFFE_CFG, small_input=True, **kwargs)


@register_model(**_cfg(aliases=("1.0-SqNxt-23",), table="Table 1; 1.0-SqNxt-23 prototxt",
                       description="1.0-SqNxt-23: depths [6,6,8,1], 7x7 stem"))
def sqnxt23_w1(**kwargs: Any) -> SqueezeNext:
    """1.0-SqNxt-23 (official prototxt): 717,280 parameters."""
    return SqueezeNext(**{**_V1, **kwargs})


@register_model(**_cfg(aliases=("1.0-G-SqNxt-23",), table="Table 1; 1.0-G-SqNxt-23 prototxt",
                       description="1.0-G-SqNxt-23: SqNxt-23 with groups=2 on 63 convs (112x < AlexNet)"))
def sqnxt23g_w1(**kwargs: Any) -> SqueezeNext:
    """1.0-G-SqNxt-23: groups=2 on each block's first 1x1 and both separable convs; 543,072 parameters."""
    return SqueezeNext(**{**_V1, "groups": 2, **kwargs})


@register_model(**_cfg(aliases=("1.0-SqNxt-23v5",), table="Table 3, Figure 9; 1.0-SqNxt-23v5 prototxt",
                       description="1.0-SqNxt-23v5: depths [2,4,14,1], 5x5 stem, projection-first blocks"))
def sqnxt23v5_w1(**kwargs: Any) -> SqueezeNext:
    """1.0-SqNxt-23v5 (official prototxt): 930,016 parameters."""
    return SqueezeNext(**{**_V5, **kwargs})


@register_model(**_cfg(aliases=("1.5-SqNxt-23",), table="Table 1",
                       description="1.5-SqNxt-23: SqNxt-23 with 1.5x stage widths"))
def sqnxt23_w1_5(**kwargs: Any) -> SqueezeNext:
    """1.5-SqNxt-23: 1.5x stage widths, stem and final conv kept at 64/128."""
    return SqueezeNext(**{**_V1, "width": 1.5, **kwargs})


@register_model(**_cfg(aliases=("1.5-SqNxt-23v5",), table="Table 3",
                       description="1.5-SqNxt-23v5: v5 with 1.5x stage widths"))
def sqnxt23v5_w1_5(**kwargs: Any) -> SqueezeNext:
    """1.5-SqNxt-23v5: 1.5x stage widths of the v5 layout."""
    return SqueezeNext(**{**_V5, "width": 1.5, **kwargs})


@register_model(**_cfg(aliases=("2.0-SqNxt-23",), table="Table 1; 2.0-SqNxt-23 prototxt",
                       description="2.0-SqNxt-23: SqNxt-23 with 2x stage widths"))
def sqnxt23_w2(**kwargs: Any) -> SqueezeNext:
    """2.0-SqNxt-23 (official prototxt): 2,361,728 parameters."""
    return SqueezeNext(**{**_V1, "width": 2.0, **kwargs})


@register_model(**_cfg(aliases=("2.0-SqNxt-23v5",), table="Table 3; 2.0-SqNxt-23v5 prototxt",
                       description="2.0-SqNxt-23v5: v5 with 2x stage widths (1.3x < MobileNet)"))
def sqnxt23v5_w2(**kwargs: Any) -> SqueezeNext:
    """2.0-SqNxt-23v5 (official prototxt): 3,222,912 parameters."""
    return SqueezeNext(**{**_V5, "width": 2.0, **kwargs})


@register_model(**_cfg(aliases=("1.0-SqNxt-34",), table="Table 1 (depths inferred)",
                       description="1.0-SqNxt-34: depths [10,10,10,2]"))
def sqnxt34_w1(**kwargs: Any) -> SqueezeNext:
    """1.0-SqNxt-34: 32 blocks, depths [10,10,10,2]; 989,472 parameters (inferred, see docs/models.md)."""
    return SqueezeNext(**{"depths": (10, 10, 10, 2), **kwargs})


@register_model(**_cfg(aliases=("1.0-SqNxt-44",), table="Table 1", description="1.0-SqNxt-44: depths [12,12,16,2]"))
def sqnxt44_w1(**kwargs: Any) -> SqueezeNext:
    """1.0-SqNxt-44: depths [12,12,16,2] (the 2.0-SqNxt-44 template at width 1)."""
    return SqueezeNext(**{"depths": (12, 12, 16, 2), **kwargs})


@register_model(**_cfg(aliases=("2.0-SqNxt-44",), table="Table 1; abstract",
                       description="2.0-SqNxt-44: depths [12,12,16,2], 2x widths (4.4M, VGG-19 accuracy)"))
def sqnxt44_w2(**kwargs: Any) -> SqueezeNext:
    """2.0-SqNxt-44: 4,428,096 parameters (abstract: 4.4M, 31x smaller than VGG-19)."""
    return SqueezeNext(**{"depths": (12, 12, 16, 2), "width": 2.0, **kwargs})

"""The source chapter's own teaching networks, repaired so they run.

These follow the PyTorch code of the chapter (``shared/seed/squeezenet-series.zh.txt``)
module for module and keep its attribute names, so a student can read the two
side by side. Two repairs only:

1. ``fire.BN1`` normalises ``out_channel // 8`` channels (the squeeze output);
   the chapter wrote ``out_channel // 4`` and its first forward pass crashes
   ("running_mean should contain 16 elements not 32").
2. The fixed final ``MaxPool2d(13)`` / ``MaxPool2d(7)`` becomes a global max
   pool, identical at the chapter's 224x224 input (the maps are exactly 13x13 /
   7x7 there), and the output is flattened to (N, classes), so any input at or
   above the minimum size works.

Everything else is as written, including where it departs from the papers; the
docstrings of the two classes list each departure.
"""

from __future__ import annotations

import torch
from torch import nn

from ._base import ClassifierModel, SpatialOp, conv_op, pool_op
from .registry import register_model


class TextbookFire(nn.Module):
    """The chapter's ``fire``: squeeze to out/8 (+BN+ReLU), expand to out/2 + out/2, ReLU after concat."""

    def __init__(self, in_channel: int, out_channel: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channel, out_channel // 8, kernel_size=1)
        self.conv2_1 = nn.Conv2d(out_channel // 8, out_channel // 2, kernel_size=1)
        self.conv2_2 = nn.Conv2d(out_channel // 8, out_channel // 2, kernel_size=3, padding=1)
        self.BN1 = nn.BatchNorm2d(out_channel // 8)  # repaired: the chapter has out_channel // 4
        self.ReLU = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ReLU(self.BN1(self.conv1(x)))
        return self.ReLU(torch.cat([self.conv2_1(out), self.conv2_2(out)], 1))


class TextbookSqueezeNet(ClassifierModel):
    """The chapter's ``SQUEEZENET``. Departures from the paper / Caffe v1.0 (docs/models.md):

    - BatchNorm after every squeeze and after pool1 (the paper has no BN): 1,249,256 params vs 1,248,424;
    - no ReLU after conv1, and conv1 has padding 3 (Caffe: ReLU, padding 0);
    - max-pools round down (Caffe rounds up) and sit after the 4th and 7th fire (paper: after fire4
      and fire8, i.e. the 3rd and 7th);
    - a max pool over the final map instead of the paper's global average pool.
    """

    def __init__(self, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__(in_chans, num_classes)
        channels = [96, 128, 128, 256, 256, 384, 384, 512, 512]
        self.conv1 = nn.Conv2d(in_chans, channels[0], 7, 2, padding=3)
        self.pool1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.BN1 = nn.BatchNorm2d(channels[0])
        blocks: list[nn.Module] = []
        for i in range(7):
            blocks.append(TextbookFire(channels[i], channels[i + 1]))
            if i in (3, 6):
                blocks.append(nn.MaxPool2d(kernel_size=3, stride=2))
        blocks.append(TextbookFire(channels[-2], channels[-1]))
        self.block1 = nn.ModuleList(blocks)
        self.num_features = channels[-1]
        self.conv10 = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(channels[-1], num_classes, 1, 1), nn.ReLU())
        self.pool2 = nn.AdaptiveMaxPool2d(1)  # repaired: MaxPool2d(13)

    def spatial_ops(self) -> list[SpatialOp]:
        """conv1, pool1 and the two max-pools between the Fires (floor rounding)."""
        pools = [pool_op(m) for m in self.block1 if isinstance(m, nn.MaxPool2d)]
        return [conv_op(self.conv1), pool_op(self.pool1), *pools]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.BN1(self.pool1(self.conv1(x)))
        for block in self.block1:
            x = block(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits:
            return torch.flatten(self.pool2(x), 1)
        return torch.flatten(self.pool2(self.conv10(x)), 1)

    def get_classifier(self) -> nn.Module:
        return self.conv10[1]

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.conv10[1] = nn.Conv2d(self.num_features, num_classes, 1, 1)


class CONV_BN_RELU(nn.Module):  # noqa: N801 - the chapter's name
    """The chapter's conv (with bias) + BN + ReLU."""

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int | tuple[int, int],
        padding: int | tuple[int, int],
        stride: int = 1,
    ) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channel, out_channel, kernel_size, stride=stride, padding=padding),
            nn.BatchNorm2d(out_channel),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Bottle(nn.Module):
    """The chapter's SqueezeNext block, as written (reductions from the input channels, 3x3 shortcut)."""

    def __init__(self, in_channel: int, out_channel: int, stride: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            CONV_BN_RELU(in_channel, in_channel // 2, kernel_size=1, stride=stride, padding=0),
            CONV_BN_RELU(in_channel // 2, in_channel // 4, kernel_size=1, padding=0),
            CONV_BN_RELU(in_channel // 4, in_channel // 2, kernel_size=(1, 3), padding=(0, 1)),
            CONV_BN_RELU(in_channel // 2, in_channel // 2, kernel_size=(3, 1), padding=(1, 0)),
            CONV_BN_RELU(in_channel // 2, out_channel, kernel_size=1, padding=0),
        )
        self.shortcut = nn.Sequential()
        if stride == 2 or out_channel != in_channel:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channel, out_channel, kernel_size=3, stride=stride, padding=1),
                nn.BatchNorm2d(out_channel),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x) + self.shortcut(x)


class TextbookSqueezeNext(ClassifierModel):
    """The chapter's ``SQUEEZENEXT`` (SqNxt-23 depths). Departures from the Caffe 1.0-SqNxt-23 (docs/models.md):

    - shortcut is a 3x3 conv + BN (Caffe: 1x1 conv + BN + ReLU), and no ReLU after the add;
    - block widths reduce from the input channels (in/2, in/4) instead of the output channels;
    - the 1x3/3x1 order is fixed instead of alternating; convs have biases;
    - stem is conv(pad 3) -> maxpool (floor) -> BN -> ReLU instead of conv(pad 0) -> BN -> ReLU -> maxpool (ceil);
    - no final 1x1 conv to 128, the FC has a bias, and the final pool is max instead of average.
    1,070,824 parameters vs 717,280.
    """

    def __init__(self, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__(in_chans, num_classes)
        channels = [64, 32, 64, 128, 256]
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_chans, channels[0], 7, 2, padding=3),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(),
        )
        self.stage1 = self._make_stage(6, channels[0], channels[1], stride=1)
        self.stage2 = self._make_stage(6, channels[1], channels[2], stride=2)
        self.stage3 = self._make_stage(8, channels[2], channels[3], stride=2)
        self.stage4 = self._make_stage(1, channels[3], channels[4], stride=2)
        self.num_features = channels[4]
        self.pool = nn.AdaptiveMaxPool2d(1)  # repaired: MaxPool2d(7)
        self.fc = nn.Linear(channels[4], num_classes)

    def spatial_ops(self) -> list[SpatialOp]:
        """The stem conv and pool, then each stage's first 1x1 (its 3x3 shortcut gives the same size)."""
        stages = (self.stage1, self.stage2, self.stage3, self.stage4)
        return [conv_op(self.conv1[0]), pool_op(self.conv1[1]), *(conv_op(s[0].block[0].conv[0]) for s in stages)]

    @staticmethod
    def _make_stage(num_blocks: int, in_channel: int, out_channel: int, stride: int) -> nn.Sequential:
        strides = [stride] + [1] * (num_blocks - 1)
        layers = []
        for s in strides:
            layers.append(Bottle(in_channel, out_channel, s))
            in_channel = out_channel
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage4(self.stage3(self.stage2(self.stage1(self.conv1(x)))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.pool(x), 1)
        return x if pre_logits else self.fc(x)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes)


_CHAPTER = "The source chapter (shared/seed/squeezenet-series.zh.txt), repaired"
_CFG = {"input_size": 224}  # preprocessing comes from the weights or the checkpoint, not the architecture


@register_model(
    aliases=("textbook-squeezenet",),
    paper=_CHAPTER,
    table="chapter code: class SQUEEZENET",
    description="The chapter's SQUEEZENET with its Fire BN bug repaired (BN, pad-3 conv1, floor pools)",
    default_cfg=_CFG,
)
def textbook_squeezenet(num_classes: int = 1000, in_chans: int = 3) -> TextbookSqueezeNet:
    """The chapter's SqueezeNet, repaired; 1,249,256 parameters at 1000 classes."""
    return TextbookSqueezeNet(num_classes=num_classes, in_chans=in_chans)


@register_model(
    aliases=("textbook-squeezenext",),
    paper=_CHAPTER,
    table="chapter code: class SQUEEZENEXT",
    description="The chapter's SQUEEZENEXT (3x3 shortcuts, input-based reductions, no final 1x1)",
    default_cfg=_CFG,
)
def textbook_squeezenext(num_classes: int = 1000, in_chans: int = 3) -> TextbookSqueezeNext:
    """The chapter's SqueezeNext; 1,070,824 parameters at 1000 classes."""
    return TextbookSqueezeNext(num_classes=num_classes, in_chans=in_chans)

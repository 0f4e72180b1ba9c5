"""Baseline networks the papers compare against, built without weights (not in the zoo's registry).

AlexNet, VGG-19 and MobileNetV2 are torchvision's (``weights=None``). MobileNet v1,
the baseline of SqueezeNext's "1.3x fewer parameters than MobileNet", is not in
torchvision, so :class:`MobileNetV1` builds it from Howard et al. 2017, Table 1
(4.2M parameters, 569M mult-adds at 224). torchvision's AlexNet is the
single-tower variant (61.1M parameters; the Caffe AlexNet of the SqueezeNet
paper has 61.0M), see docs/analysis.md. :func:`squeezelab.models.resolve_model`
finds these names next to the zoo's and torchvision's.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

# (output channels, stride) of the 13 depthwise-separable layers, Howard et al. 2017 Table 1.
_MOBILENET_V1_LAYERS = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)


def _conv_bn(cin: int, cout: int, stride: int, groups: int = 1) -> nn.Sequential:
    kernel = 3 if groups > 1 or cin == 3 else 1
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class MobileNetV1(nn.Module):
    """MobileNet v1 (width 1.0): 3x3/2 conv, 13 depthwise + pointwise pairs, global pool, FC."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, 32, 2)]
        cin = 32
        for cout, stride in _MOBILENET_V1_LAYERS:
            layers += [_conv_bn(cin, cin, stride, groups=cin), _conv_bn(cin, cout, 1)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def torchvision_model(name: str, **kwargs: Any) -> nn.Module:
    """torchvision's classification model ``name`` without weights.

    torchvision is imported here, not at the top: importing it costs 1.2 s, and only the
    names outside the zoo need it (docs/architecture.md, rule 2).
    """
    import torchvision

    return torchvision.models.get_model(name, weights=None, **kwargs)


def torchvision_names() -> list[str]:
    """torchvision's classification model names (``alexnet``, ``resnet18``, ...)."""
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def _from_torchvision(name: str) -> Callable[..., nn.Module]:
    def build(**kwargs: Any) -> nn.Module:
        return torchvision_model(name, **kwargs)

    return build


#: name -> builder of each baseline (no weights, 1000 classes unless ``num_classes=`` says otherwise).
BASELINES: dict[str, Callable[..., nn.Module]] = {
    "alexnet": _from_torchvision("alexnet"),
    "vgg19": _from_torchvision("vgg19"),
    "mobilenet_v2": _from_torchvision("mobilenet_v2"),
    "mobilenet_v1": MobileNetV1,
}

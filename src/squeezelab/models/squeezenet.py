"""SqueezeNet v1.0 / v1.1, the bypass variants and the paper's design space.

Iandola et al., "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters
and <0.5MB model size", ICLR 2017 (arXiv 1602.07360).

The layout and the state-dict keys are torchvision's (``features.N``,
``classifier.1``, Fire submodules ``squeeze``/``expand1x1``/``expand3x3``), so
torchvision checkpoints load unchanged. ``features`` maps to Table 1 row by
row: conv1, maxpool1, fire2-fire4, maxpool4, fire5-fire8, maxpool8, fire9;
``classifier`` is drop9, conv10, relu, avgpool10. Pools round up
(``ceil_mode=True``) as Caffe does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
from torch import nn

from ._base import ClassifierModel, Dropout, SpatialOp, conv_op, pool_op
from .registry import register_model

Bypass = Literal["none", "simple", "complex"]

#: Paper section 5.1 defaults; they rebuild SqueezeNet v1.0's Fire sizes exactly.
DEFAULT_BASE_E = 128
DEFAULT_INCR_E = 128
DEFAULT_PCT3X3 = 0.5
DEFAULT_FREQ = 2
DEFAULT_SR = 0.125
NUM_FIRES = 8
#: Initial conv10 bias: keeps the ReLU'd classifier alive from scratch (see ``SqueezeNet._make_conv10``).
CONV10_BIAS_INIT = 1.0
#: Initial expand bias of identity-bypassed Fires, whose expand weights start at zero (``SqueezeNet._init_weights``).
BYPASS_EXPAND_BIAS_INIT = 0.01


@dataclass(frozen=True)
class FireSpec:
    """One Fire module's metaparameters as in Table 1: s1x1, e1x1, e3x3."""

    s1x1: int
    e1x1: int
    e3x3: int

    @property
    def out_channels(self) -> int:
        return self.e1x1 + self.e3x3


def fire_specs(
    base_e: int = DEFAULT_BASE_E,
    incr_e: int = DEFAULT_INCR_E,
    pct3x3: float = DEFAULT_PCT3X3,
    freq: int = DEFAULT_FREQ,
    sr: float = DEFAULT_SR,
    num_fires: int = NUM_FIRES,
) -> list[FireSpec]:
    """The Fire sizes of paper section 5 (Figure 3's metaparameters).

    e_i = base_e + incr_e * floor(i / freq); e3x3 = pct3x3 * e_i;
    e1x1 = e_i - e3x3; s1x1 = SR * e_i.
    """
    if not 0.0 <= pct3x3 <= 1.0:
        raise ValueError(f"pct3x3 must be in [0, 1], got {pct3x3}")
    if not 0.0 < sr <= 1.0:
        raise ValueError(f"sr (squeeze ratio) must be in (0, 1], got {sr}")
    if freq < 1 or base_e < 1 or incr_e < 0:
        raise ValueError(f"need freq >= 1, base_e >= 1, incr_e >= 0; got {freq}, {base_e}, {incr_e}")
    specs = []
    for i in range(num_fires):
        e = base_e + incr_e * (i // freq)
        e3 = int(round(e * pct3x3))
        specs.append(FireSpec(s1x1=max(1, int(round(e * sr))), e1x1=e - e3, e3x3=e3))
    return specs


class Fire(nn.Module):
    """Fire module (section 3.2): squeeze 1x1 -> ReLU -> [expand 1x1, expand 3x3] -> ReLU -> concat.

    ``bypass`` is added after the concatenation with no ReLU after the sum, as in
    the released simple-bypass model (songhan/SqueezeNet-Residual): an identity
    (simple bypass) or a 1x1 convolution (complex bypass, section 6).
    """

    def __init__(
        self, inplanes: int, squeeze_planes: int, expand1x1_planes: int, expand3x3_planes: int, bypass: Bypass = "none"
    ) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)
        out_planes = expand1x1_planes + expand3x3_planes
        self.bypass: Optional[nn.Module] = None
        if bypass == "simple":
            if inplanes != out_planes:
                raise ValueError(f"a simple bypass needs equal input and output channels, got {inplanes} -> {out_planes}")
            self.bypass = nn.Identity()
        elif bypass == "complex":
            self.bypass = nn.Conv2d(inplanes, out_planes, kernel_size=1)
        elif bypass != "none":
            raise ValueError(f"bypass must be 'none', 'simple' or 'complex', got {bypass!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze_activation(self.squeeze(x))
        out = torch.cat(
            [self.expand1x1_activation(self.expand1x1(s)), self.expand3x3_activation(self.expand3x3(s))], 1
        )
        if self.bypass is not None:
            out = out + self.bypass(x)
        return out


# Per version: stem (out channels, kernel) and the Fire indices (0-based) followed by a max-pool.
_VERSIONS = {
    "1_0": {"stem_channels": 96, "stem_kernel": 7, "pool_after": (2, 6)},  # maxpool after fire4, fire8
    "1_1": {"stem_channels": 64, "stem_kernel": 3, "pool_after": (1, 3)},  # maxpool after fire3, fire5
}


def _maxpool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)


class SqueezeNet(ClassifierModel):
    """SqueezeNet with torchvision's module layout.

    Args:
        version: ``"1_0"`` (Table 1) or ``"1_1"`` (forresti/SqueezeNet v1.1: 3x3 conv1 with 64
            filters, pools after fire3 and fire5).
        num_classes, in_chans: classifier outputs and input channels.
        dropout: drop9 probability.
        bypass: ``"none"``, ``"simple"`` (identity around fire3/5/7/9, Table 3) or ``"complex"``
            (simple plus 1x1-conv bypasses around fire2/4/6/8).
        base_e, incr_e, pct3x3, freq, sr: the section 5 metaparameters (defaults = v1.0).
        conv10_padding: 1 reproduces the Caffe v1.0 prototxt (15x15 conv10 map); torchvision uses 0.
        small_input: replace the stride-2 stem by a 3x3 stride-1 conv for 8-64 px images
            (the CIFAR adaptation, ``docs/small-inputs.md``).
    """

    def __init__(
        self,
        version: str = "1_0",
        num_classes: int = 1000,
        in_chans: int = 3,
        dropout: float = 0.5,
        bypass: Bypass = "none",
        base_e: int = DEFAULT_BASE_E,
        incr_e: int = DEFAULT_INCR_E,
        pct3x3: float = DEFAULT_PCT3X3,
        freq: int = DEFAULT_FREQ,
        sr: float = DEFAULT_SR,
        conv10_padding: int = 0,
        small_input: bool = False,
    ) -> None:
        super().__init__(in_chans, num_classes)
        if version not in _VERSIONS:
            raise ValueError(f"version must be one of {sorted(_VERSIONS)}, got {version!r}")
        cfg = _VERSIONS[version]
        self.version = version
        self.fires = fire_specs(base_e, incr_e, pct3x3, freq, sr)
        stem_channels = int(cfg["stem_channels"])
        if small_input:
            stem = nn.Conv2d(in_chans, stem_channels, kernel_size=3, stride=1, padding=1)
        else:
            stem = nn.Conv2d(in_chans, stem_channels, kernel_size=int(cfg["stem_kernel"]), stride=2)
        layers: list[nn.Module] = [stem, nn.ReLU(inplace=True), _maxpool()]
        channels = stem_channels
        for i, spec in enumerate(self.fires):
            fire_bypass: Bypass = "none"
            if bypass != "none" and i % 2 == 1:
                fire_bypass = "simple"
            elif bypass == "complex":
                fire_bypass = "complex"
            layers.append(Fire(channels, spec.s1x1, spec.e1x1, spec.e3x3, bypass=fire_bypass))
            channels = spec.out_channels
            if i in cfg["pool_after"]:
                layers.append(_maxpool())
        self.features = nn.Sequential(*layers)
        self.num_features = channels
        self.conv10_padding = conv10_padding
        self.classifier = nn.Sequential(
            Dropout(p=dropout),
            self._make_conv10(num_classes),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d((1, 1)),
        )
        self._init_weights()

    def _make_conv10(self, num_classes: int) -> nn.Conv2d:
        """conv10: Caffe's gaussian std 0.01 weights, and a bias of :data:`CONV10_BIAS_INIT` (not 0).

        conv10 is followed by a ReLU, so a class whose pre-activation turns
        negative for every image gets no gradient again. With zero bias the
        softmax gradient drives all ten below zero within ~30 SGD steps and
        training stalls at chance (``docs/small-inputs.md``). A common positive
        bias keeps the ReLU in its linear range at the start; softmax is
        shift-invariant, so it changes no initial prediction.
        """
        conv = nn.Conv2d(self.num_features, num_classes, kernel_size=1, padding=self.conv10_padding)
        nn.init.normal_(conv.weight, mean=0.0, std=0.01)
        nn.init.constant_(conv.bias, CONV10_BIAS_INIT)
        return conv

    def _init_weights(self) -> None:
        """Kaiming-uniform convolutions (as torchvision) and zero biases; bypassed Fires start as a Fixup.

        A bypass adds a Fire's input to its output with no BatchNorm to rescale
        the sum. With plain Kaiming initialisation conv10's inputs start with 67x
        (simple) and 3,500x (complex) the plain network's second moment, and
        from-scratch training stalled at chance or diverged to NaN
        (docs/small-inputs.md). As in Fixup (Zhang et al. 2019) and
        zero-init-residual (Goyal et al. 2017), each Fire starts as what its
        bypass makes cheapest: an identity-bypassed Fire as the identity (expand
        weights zero, expand biases :data:`BYPASS_EXPAND_BIAS_INIT` so the ReLUs
        pass gradient), a conv-bypassed Fire as the plain Fire (bypass weights
        zero). The complex-bypass network then starts as the simple one.
        """
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for fire in self.features.modules():
            if not isinstance(fire, Fire):
                continue
            if isinstance(fire.bypass, nn.Identity):
                for expand in (fire.expand1x1, fire.expand3x3):
                    nn.init.zeros_(expand.weight)
                    nn.init.constant_(expand.bias, BYPASS_EXPAND_BIAS_INIT)
            elif isinstance(fire.bypass, nn.Conv2d):
                nn.init.zeros_(fire.bypass.weight)

    def spatial_ops(self) -> list[SpatialOp]:
        """The stem and the three max-pools (Fire modules keep the size)."""
        return [conv_op(m) if isinstance(m, nn.Conv2d) else pool_op(m) for m in self.features
                if isinstance(m, (nn.Conv2d, nn.MaxPool2d))]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits:
            return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return torch.flatten(self.classifier(x), 1)

    def get_classifier(self) -> nn.Module:
        return self.classifier[1]

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier[1] = self._make_conv10(num_classes)

    def layer_names(self) -> dict[str, str]:
        """Module path -> name: the forresti/SqueezeNet prototxt's (``conv1``, ``relu_conv1``, ``fire2``,
        ``fire2/squeeze1x1``, ``fire2/relu_squeeze1x1``, ..., ``drop9``, ``conv10``, ``relu_conv10``), with
        Table 1's pool names (``maxpool1``, ``maxpool4``, ``maxpool8``, ``avgpool10``). Fire modules are blocks."""
        names: dict[str, str] = {"features.0": "conv1", "features.1": "relu_conv1", "features.2": "maxpool1"}
        fire_no = 2
        for idx, module in enumerate(self.features):
            if isinstance(module, Fire):
                fire = names[f"features.{idx}"] = f"fire{fire_no}"
                for child, _ in module.named_children():
                    names[f"features.{idx}.{child}"] = f"{fire}/{_FIRE_LAYER_NAMES[child]}"
                fire_no += 1
            elif isinstance(module, nn.MaxPool2d) and idx > 2:
                names[f"features.{idx}"] = f"maxpool{fire_no - 1}"
        names.update({"classifier.0": "drop9", "classifier.1": "conv10", "classifier.2": "relu_conv10",
                      "classifier.3": "avgpool10"})
        return names


#: Fire submodule -> its name in the Caffe prototxts (``fire2/squeeze1x1``); the bypass conv is ours.
_FIRE_LAYER_NAMES = {
    "squeeze": "squeeze1x1", "squeeze_activation": "relu_squeeze1x1", "expand1x1": "expand1x1",
    "expand1x1_activation": "relu_expand1x1", "expand3x3": "expand3x3", "expand3x3_activation": "relu_expand3x3",
    "bypass": "bypass",
}


# Only the design input size: preprocessing belongs to each set of weights (squeezelab.weights.registry)
# or to a checkpoint's metadata, never to the architecture.
_TV_CFG = {"input_size": 224}
_PAPER = "Iandola et al., SqueezeNet, ICLR 2017 (arXiv 1602.07360)"


@register_model(
    aliases=("squeezenet", "squeezenet_v1.0", "SqueezeNet-v1.0", "squeezenet1.0"),
    paper=_PAPER,
    table="Table 1",
    description="SqueezeNet v1.0 (Caffe / torchvision): 7x7 conv1, pools after conv1, fire4, fire8",
    default_cfg=_TV_CFG,
    small_input=True,
)
def squeezenet1_0(**kwargs) -> SqueezeNet:
    """SqueezeNet v1.0, 1,248,424 parameters (Table 1, "#params before pruning")."""
    return SqueezeNet(version="1_0", **kwargs)


@register_model(
    aliases=("squeezenet_v1.1", "SqueezeNet-v1.1", "squeezenet1.1"),
    paper=_PAPER + "; forresti/SqueezeNet SqueezeNet_v1.1/README.md",
    table="v1.1 README",
    description="SqueezeNet v1.1: 3x3 conv1 with 64 filters, pools after fire3 and fire5 (2.4x fewer MACs)",
    default_cfg=_TV_CFG,
    small_input=True,
)
def squeezenet1_1(**kwargs) -> SqueezeNet:
    """SqueezeNet v1.1, 1,235,496 parameters; same Fire sizes as v1.0, earlier pooling."""
    return SqueezeNet(version="1_1", **kwargs)


@register_model(
    aliases=("squeezenet_simple_bypass", "SqueezeNet-simple-bypass"),
    paper=_PAPER,
    table="Table 3, Figure 2 (middle)",
    description="SqueezeNet v1.0 + identity bypass around fire3, fire5, fire7, fire9",
    default_cfg=_TV_CFG,
    small_input=True,
)
def squeezenet1_0_simple_bypass(**kwargs) -> SqueezeNet:
    """SqueezeNet v1.0 with simple bypass (Table 3: 60.4% top-1); adds no parameters."""
    return SqueezeNet(version="1_0", bypass="simple", **kwargs)


@register_model(
    aliases=("squeezenet_complex_bypass", "SqueezeNet-complex-bypass"),
    paper=_PAPER,
    table="Table 3, Figure 2 (right)",
    description="SqueezeNet v1.0 + simple bypass + 1x1-conv bypass around fire2, fire4, fire6, fire8",
    default_cfg=_TV_CFG,
    small_input=True,
)
def squeezenet1_0_complex_bypass(**kwargs) -> SqueezeNet:
    """SqueezeNet v1.0 with complex bypass: 1,589,672 parameters.

    The four 1x1 bypass convolutions (with bias, as Caffe convolutions have) add
    96*128+128 + 128*256+256 + 256*384+384 + 384*512+512 = 341,248 parameters.
    The paper's Table 3 lists 7.7 MB (about 1.92M fp32 parameters), which no
    placement of 1x1 bypasses around channel-changing Fire modules reproduces;
    see docs/models.md.
    """
    return SqueezeNet(version="1_0", bypass="complex", **kwargs)

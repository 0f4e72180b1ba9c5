"""The SqueezeNet and SqueezeNext papers' headline claims that need no ImageNet training.

Every measured value is counted here from the models as built (zoo models and the
baselines of :mod:`squeezelab.models.baselines`); only the papers' own figures
are written down. A ratio claim "Nx" holds when the measured ratio is at least
95% of N (the papers round: 240MB / 4.8MB is exactly 50x, 61.1M / 1.25M is 48.9x).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

from ..models import resolve_model
from ..plotting import new_figure
from .claims import ClaimContext, ClaimRow, claim
from .counting import count_macs, count_params
from .profiling import MIB

#: A ratio claim holds at >= this fraction of the stated factor (the papers round their factors).
RATIO_TOLERANCE = 0.95
SQUEEZENET = "SqueezeNet paper (arXiv 1602.07360)"
SQUEEZENEXT = "SqueezeNext paper (arXiv 1803.10615)"


def _params(ctx: ClaimContext, name: str) -> int:
    return _count_params(name)


def _macs(ctx: ClaimContext, name: str, size: int, conv10_padding: int = 0) -> int:
    return _count_macs(name, size, conv10_padding)


@lru_cache(maxsize=None)
def _count_params(name: str) -> int:
    """Counts are pure functions of the architecture, so one process counts each model once."""
    return count_params(resolve_model(name).build(meta=True))


@lru_cache(maxsize=None)
def _count_macs(name: str, size: int, conv10_padding: int) -> int:
    overrides = {"conv10_padding": conv10_padding} if conv10_padding else {}
    return count_macs(resolve_model(name, **overrides).build(meta=True), size)


def _ratio_row(text: str, paper_factor: float, measured: float, note: str, paper: Optional[str] = None) -> ClaimRow:
    return ClaimRow(
        text,
        paper=paper or f"{paper_factor:g}x",
        measured=f"{measured:.1f}x",
        holds=measured >= RATIO_TOLERANCE * paper_factor,
        note=note,
    )


def _parameter_plot(ctx: ClaimContext) -> Optional[str]:
    """Parameters of the papers' baselines and the SqueezeNet family on a log scale."""

    names = ["alexnet", "vgg19", "mobilenet_v1", "mobilenet_v2", "squeezenet1_0", "squeezenet1_1",
             "sqnxt23_w1", "sqnxt23g_w1", "sqnxt23v5_w2", "sqnxt44_w2"]
    params = [_params(ctx, n) for n in names]
    fig = new_figure(figsize=(8, 4))
    ax = fig.subplots()
    bars = ax.barh(names, [p / 1e6 for p in params], color=["tab:gray"] * 4 + ["tab:blue"] * 2 + ["tab:green"] * 4)
    ax.set_xscale("log")
    ax.set_xlabel("parameters (millions, log scale)")
    ax.bar_label(bars, labels=[f"{p / 1e6:.2f}M" for p in params], fontsize=8, padding=2)
    ax.invert_yaxis()
    ax.set_title("Baselines (grey), SqueezeNet (blue), SqueezeNext (green)")
    return ctx.save_figure(fig, "claims_params.png")


@claim(SQUEEZENET)
def squeezenet_vs_alexnet(*, ctx: ClaimContext) -> list[ClaimRow]:
    """Abstract and Table 2: 50x fewer parameters than AlexNet, 4.8MB at 32 bit."""
    alexnet, sq = _params(ctx, "alexnet"), _params(ctx, "squeezenet1_0")
    size_mib = sq * 4 / MIB
    link = _parameter_plot(ctx) if ctx.draws else None
    return [
        _ratio_row(
            "SqueezeNet v1.0 has 50x fewer parameters than AlexNet", 50, alexnet / sq,
            f"torchvision AlexNet {alexnet:,} / SqueezeNet v1.0 {sq:,} params (single-tower AlexNet, docs/analysis.md)"
            + (f"; all compared models: {link}" if link else ""),
        ),
        ClaimRow(
            "SqueezeNet v1.0 is 4.8MB at 32-bit (Table 2)", "4.8MB", f"{size_mib:.2f} MiB ({sq * 4 / 1e6:.2f} MB)",
            holds=round(size_mib, 1) == 4.8,
            note=f"{sq:,} params x 4 bytes; holds if it rounds to 4.8 (the paper's MB is MiB)",
        ),
    ]


@claim(SQUEEZENET)
def v11_less_computation(*, ctx: ClaimContext) -> list[ClaimRow]:
    """forresti/SqueezeNet v1.1 README: 0.72 vs 1.72 GFLOPS, "2.4x less computation"."""
    v10_caffe = _macs(ctx, "squeezenet1_0", 227, conv10_padding=1)
    v11_227 = _macs(ctx, "squeezenet1_1", 227)
    v10_224, v11_224 = _macs(ctx, "squeezenet1_0", 224), _macs(ctx, "squeezenet1_1", 224)
    return [
        _ratio_row(
            "v1.1 needs 2.4x less computation than v1.0 (Caffe, 227 input)", 2.4, v10_caffe / v11_227,
            f"{2 * v10_caffe / 1e9:.2f} vs {2 * v11_227 / 1e9:.2f} GFLOP (2 x MACs, v1.0 with Caffe's conv10 pad=1); "
            "the README's 1.72 for v1.0 is reproduced, its 0.72 for v1.1 is not",
        ),
        _ratio_row(
            "v1.1 needs 2.4x less computation than v1.0 (torchvision, 224 input)", 2.4, v10_224 / v11_224,
            f"{v10_224 / 1e6:.1f}M vs {v11_224 / 1e6:.1f}M MACs",
        ),
    ]


@claim(SQUEEZENEXT)
def squeezenext_vs_alexnet(*, ctx: ClaimContext) -> list[ClaimRow]:
    """Abstract: SqueezeNext-23 has 112x fewer parameters than AlexNet at AlexNet accuracy."""
    alexnet = _params(ctx, "alexnet")
    grouped, plain = _params(ctx, "sqnxt23g_w1"), _params(ctx, "sqnxt23_w1")
    return [
        _ratio_row(
            "1.0-G-SqNxt-23 (grouped) has 112x fewer parameters than AlexNet", 112, alexnet / grouped,
            f"AlexNet {alexnet:,} / {grouped:,} params",
        ),
        _ratio_row(
            "1.0-SqNxt-23 (no groups) has 112x fewer parameters than AlexNet", 112, alexnet / plain,
            f"AlexNet {alexnet:,} / {plain:,} params: the 112x holds only for the grouped variant",
        ),
    ]


@claim(SQUEEZENEXT)
def squeezenext44_vs_vgg19(*, ctx: ClaimContext) -> list[ClaimRow]:
    """Abstract: 2.0-SqNxt-44 has 4.4M parameters, 31x fewer than VGG-19."""
    vgg, sqnxt = _params(ctx, "vgg19"), _params(ctx, "sqnxt44_w2")
    return [
        _ratio_row(
            "2.0-SqNxt-44 is 31x smaller than VGG-19", 31, vgg / sqnxt, f"torchvision VGG-19 {vgg:,} / {sqnxt:,} params"
        ),
        ClaimRow(
            "2.0-SqNxt-44 has 4.4M parameters", "4.4M", f"{sqnxt / 1e6:.2f}M", holds=round(sqnxt / 1e6, 1) == 4.4,
            note="holds if it rounds to 4.4M; depths [12,12,16,2] from the unofficial template (docs/models.md)",
        ),
    ]


@claim(SQUEEZENEXT)
def squeezenext23v5_vs_mobilenet(*, ctx: ClaimContext) -> list[ClaimRow]:
    """Section 1/Table 3: 2.0-SqNxt-23v5 has 1.3x fewer parameters than MobileNet (v1, 4.2M)."""
    v1, v2, sqnxt = _params(ctx, "mobilenet_v1"), _params(ctx, "mobilenet_v2"), _params(ctx, "sqnxt23v5_w2")
    return [
        _ratio_row(
            "2.0-SqNxt-23v5 has 1.3x fewer parameters than MobileNet", 1.3, v1 / sqnxt,
            f"MobileNet v1 (Howard et al. Table 1, built here) {v1:,} / {sqnxt:,}; "
            f"against torchvision MobileNetV2 ({v2:,}) it is {v2 / sqnxt:.2f}x",
        ),
    ]

"""The analysis stage of ``squeezelab demo``: profile of the demo's model and the claims table."""

from __future__ import annotations

from typing import Any

from .claims import render_markdown, run_claims
from .plots import plot_profile
from .profiling import Profile, profile


def _demo_profile(ctx: Any) -> Profile:
    checkpoint = ctx.artifacts.get("checkpoint")
    if checkpoint is None:
        return profile("squeezenet1_1", 224)
    from ..weights.checkpoint import load_checkpoint_model

    model, meta = load_checkpoint_model(checkpoint)
    prof = profile(model, meta.preprocess.crop)
    prof.meta["checkpoint"] = str(checkpoint)
    return prof


def stage(ctx: Any) -> None:
    """Per-layer profile (table and plot) of the trained checkpoint, or SqueezeNet v1.1, and the claims."""
    prof = _demo_profile(ctx)
    source = f"checkpoint `{prof.meta['checkpoint']}`" if "checkpoint" in prof.meta else "squeezenet1_1 (no checkpoint)"
    link = ctx.report.save_figure(plot_profile(prof, log=True), "profile.png")
    ctx.report.add(
        "Profile",
        f"{source}, one row per paper-level unit (`squeezelab profile`).\n\n"
        f"{prof.table(markdown=True, blocks_only=True)}\n\n```\n{prof.summary()}\n```\n\n{link}",
    )
    results, claims_ctx = run_claims(figure_dir=ctx.root)
    body = render_markdown(results, claims_ctx.figures).split("\n", 2)[2]
    ctx.report.add("The papers' claims", body.replace("\n## ", "\n### "))

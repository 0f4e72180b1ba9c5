"""The analysis stages of ``squeezelab demo``: profile of the demo's model, the claims table, and the measured
design-space experiments beside them."""

from __future__ import annotations

import shutil

from ..analysis.claims import render_markdown, run_claims
from ..analysis.plots import plot_profile
from ..analysis.profiling import Profile, profile
from ..analysis.sweep_claims import FIGURE_NAME as SWEEP_FIGURE
from ..io import atomic_path
from ..weights import build_model
from .report import DemoContext


def _demo_profile(ctx: DemoContext) -> Profile:
    checkpoint = ctx.artifacts.get("checkpoint")
    if checkpoint is None:
        return profile("squeezenet1_1", 224)
    model = build_model(checkpoint)
    prof = profile(model, model.pretrained_cfg.input_size)
    prof.meta["checkpoint"] = str(checkpoint)
    return prof


def stage(ctx: DemoContext) -> None:
    """Per-layer profile (table and plot) of the trained checkpoint, or SqueezeNet v1.1, and the claims."""
    prof = _demo_profile(ctx)
    source = f"checkpoint `{prof.meta['checkpoint']}`" if "checkpoint" in prof.meta else "squeezenet1_1 (no checkpoint)"
    link = ctx.report.save_figure(plot_profile(prof, log=True), "profile.png")
    ctx.report.add(
        "Profile",
        f"{source}, one row per paper-level unit (`squeezelab profile`).\n\n"
        f"{prof.table(markdown=True, blocks_only=True)}\n\n```\n{prof.summary()}\n```\n\n{link}",
    )
    results, claims_ctx = run_claims(figure_dir=ctx.root, sweep_dir=ctx.sweep_dir)
    ctx.artifacts["sweep_figure"] = SWEEP_FIGURE in claims_ctx.figures
    figures = [name for name in claims_ctx.figures if name != SWEEP_FIGURE]  # shown with the sweep's tables below
    body = render_markdown(results, figures).split("\n", 2)[2]
    ctx.report.add("The papers' claims", body.replace("\n## ", "\n### "))


def design_space_stage(ctx: DemoContext) -> None:
    """The learning experiments beside the static claims: the report ``squeezelab sweep`` wrote into
    ``ctx.sweep_dir`` (Figure 3's SR and pct3x3 sweeps, Table 3's bypass variants, a verdict per finding)."""
    folder = ctx.sweep_dir
    report = folder / "report.md" if folder is not None else None
    if report is None or not report.is_file():
        ctx.report.add("Design space (measured)", "No sweep results were given. `squeezelab sweep --budget quick "
                       "--data cifar10:DIR -o OUT` measures SqueezeNet's design space (docs/design-space.md); "
                       "`squeezelab demo --sweep OUT` shows its tables, plot and verdicts here.")
        return
    title, *body = report.read_text().splitlines()
    text = "\n".join("#" + line if line.startswith("## ") else line for line in body)  # its sections nest here
    drawn = ctx.artifacts.get("sweep_figure", False)  # the claims stage plots it from the same results
    if not drawn and (folder / "figure3.png").is_file():
        with atomic_path(ctx.root / SWEEP_FIGURE) as tmp:
            shutil.copyfile(folder / "figure3.png", tmp)
        drawn = True
    if drawn:
        text = text.replace("(figure3.png)", f"({SWEEP_FIGURE})")
    ctx.report.add("Design space (measured)", f"`{report}`: {title.lstrip('# ')}.\n\n{text}")

"""Demo stage: every zoo model built and counted (parameters and MACs at its design input size)."""

from __future__ import annotations

from ..analysis import count_macs, count_params
from ..extras import available, install_command, note_missing
from ..models import create_model, get_model_entry, list_models
from ..plotting import new_figure
from ..tables import format_table
from .report import DemoContext


def zoo_stage(ctx: DemoContext) -> None:
    """Build every zoo model and tabulate parameters and MACs at its design input size."""
    rows, points = [], []
    for name in list_models():
        entry = get_model_entry(name)
        model = create_model(name)
        params, macs = count_params(model), count_macs(model, entry.input_size)
        rows.append([name, params, f"{macs / 1e6:,.1f}", entry.input_size, model.min_input_size, entry.description])
        points.append((name, params, macs))
    link = _zoo_figure(ctx, points) if available("matplotlib") else \
        f"(No plot: matplotlib is not installed; {install_command('matplotlib')}.)"
    if not available("matplotlib"):
        note_missing("matplotlib", "the zoo plot")
    table = format_table(["model", "params", "MMACs", "input", "min input", "description"], rows, markdown=True)
    ctx.report.add("Model zoo", f"{len(rows)} models, built and counted.\n\n{table}\n\n{link}")


def _zoo_figure(ctx: DemoContext, points: list[tuple[str, int, int]]) -> str:
    """Parameters against MACs of every zoo model, as zoo.png; returns the Markdown link."""
    fig = new_figure(figsize=(8, 5))
    ax = fig.subplots()
    for name, params, macs in points:
        ax.scatter(params / 1e6, macs / 1e6, s=30)
        ax.annotate(name, (params / 1e6, macs / 1e6), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("MACs (millions, at design input size)")
    ax.set_title("The squeezelab zoo")
    ax.grid(alpha=0.3)
    return ctx.report.save_figure(fig, "zoo.png")

"""Per-layer bar plots of a :class:`~squeezelab.analysis.profile.Profile`."""

from __future__ import annotations

from typing import Any

from ..plotting import new_figure
from .profiling import Profile


def plot_profile(prof: Profile, log: bool = False, blocks: bool = True) -> Any:
    """Two stacked bar charts, parameters and MACs per layer, in network order.

    ``blocks=True`` draws one bar per paper-level unit (conv1, fire2, ...), as in SqueezeNet
    Table 1; ``False`` one bar per layer. ``log`` uses a log y axis (zero bars are left out).
    """
    rows = [r for r in (prof.top_level() if blocks else prof.layer_rows()) if r.params or r.macs]
    names = [r.name for r in rows]
    fig = new_figure(figsize=(max(8.0, 0.28 * len(rows) + 3), 6.5))
    ax_p, ax_m = fig.subplots(2, 1, sharex=True)
    for ax, values, label, color in (
        (ax_p, [r.params for r in rows], "parameters", "tab:blue"),
        (ax_m, [r.macs / 1e6 for r in rows], "MACs (millions)", "tab:orange"),
    ):
        ax.bar(range(len(rows)), values, color=color)
        ax.set_ylabel(label + (" (log)" if log else ""))
        if log:
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
    ax_p.set_title(
        f"{prof.model_name} @ {prof.input_size[0]}x{prof.input_size[1]}: {prof.params / 1e6:.2f}M params, "
        f"{prof.macs / 1e6:.0f}M MACs"
    )
    ax_m.set_xticks(range(len(rows)))
    ax_m.set_xticklabels(names, rotation=60, ha="right", fontsize=7 if len(rows) > 30 else 9)
    fig.tight_layout()
    return fig

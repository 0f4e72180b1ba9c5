"""Matplotlib figures without pyplot: no global figure registry and no backend switch.

``new_figure`` builds a :class:`matplotlib.figure.Figure` bound to an Agg canvas,
so ``fig.savefig`` writes PNGs in any process (a server, a notebook with its
own backend) and the figure is freed with its last reference. No library
module switches the user's backend or uses pyplot's global state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .extras import require

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(**kwargs: Any) -> "Figure":
    """A Figure (``kwargs`` as for ``Figure``, e.g. ``figsize``) drawn by its own Agg canvas."""
    figure_module = require("matplotlib.figure", "plotting")
    agg = require("matplotlib.backends.backend_agg", "plotting")
    fig = figure_module.Figure(**kwargs)
    agg.FigureCanvasAgg(fig)
    return fig


def colormap(name: str) -> Any:
    """A registered matplotlib colormap, e.g. ``"tab10"``."""
    return require("matplotlib", "plotting").colormaps[name]

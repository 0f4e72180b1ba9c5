"""Analysis: parameter and MAC counts (and, with the analysis issue, per-layer profiles and the papers' claims)."""

from .counting import count_macs, count_params

__all__ = ["count_macs", "count_params"]

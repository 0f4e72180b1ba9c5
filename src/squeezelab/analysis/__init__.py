"""Analysis: parameter and MAC counts, per-layer profiles, model comparison and the papers' claims.

``profile(model_or_name, input_size, weights)`` returns a :class:`Profile`;
``claims.claim(section)`` registers a claim for ``squeezelab claims`` (docs/analysis.md).
"""

from .counting import count_macs, count_params
from .profiling import LayerProfile, Profile, profile

__all__ = ["LayerProfile", "Profile", "count_macs", "count_params", "profile"]

"""Side-by-side counts of several models with ratios to a baseline (``squeezelab compare``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..models import resolve_model
from ..models.tracing import InputSize
from .counting import count_macs, count_params


@dataclass(frozen=True)
class Comparison:
    """Counts of one model and its ratios to the baseline (baseline / model: >1 means smaller)."""

    name: str
    params: int
    macs: int
    param_ratio: float
    mac_ratio: float

    @property
    def size_fp32(self) -> int:
        return 4 * self.params


def _counts(name: str, input_size: InputSize) -> tuple[int, int]:
    model = resolve_model(name).build(meta=True)
    return count_params(model), count_macs(model, input_size)


def compare_models(names: Sequence[str], input_size: InputSize = 224, baseline: str = "alexnet") -> list[Comparison]:
    """Params and MACs of each model and of ``baseline``; the baseline is the first row."""
    base_params, base_macs = _counts(baseline, input_size)
    rows = [Comparison(baseline, base_params, base_macs, 1.0, 1.0)]
    for name in names:
        if name.strip().lower() == baseline.strip().lower():
            continue
        params, macs = _counts(name, input_size)
        rows.append(Comparison(name, params, macs, base_params / params, base_macs / macs))
    return rows

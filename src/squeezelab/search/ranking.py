"""Rank agreement between a proxy and the accuracy it stands for: Kendall's tau-b, Spearman's rho, bootstrap
intervals and top-k recall (the statistics of zero-cost proxy studies, e.g. Abdelfattah et al., ICLR 2021)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..errors import SqueezelabError


def _pairs(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(concordant - discordant, pairs not tied in x, pairs not tied in y) over all pairs i < j."""
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    upper = np.triu_indices(len(x), k=1)
    dx, dy = dx[upper], dy[upper]
    return float(np.sum(dx * dy)), float(np.count_nonzero(dx)), float(np.count_nonzero(dy))


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either variable handled as ``scipy.stats.kendalltau``); nan if one is constant."""
    x, y = _check(x, y)
    s, nx, ny = _pairs(x, y)
    return s / np.sqrt(nx * ny) if nx and ny else float("nan")


def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their mean rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson's correlation of the (tie-averaged) ranks."""
    x, y = _check(x, y)
    rx, ry = rankdata(x), rankdata(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def top_k_recall(proxy: Sequence[float], truth: Sequence[float], k: int = 10) -> float:
    """The share of the ``k`` best designs by ``truth`` that are among the ``k`` best by ``proxy``."""
    proxy, truth = _check(proxy, truth)
    if not 0 < k <= len(truth):
        raise SqueezelabError(f"top-k recall needs 0 < k <= {len(truth)}, got {k}")
    best = set(np.argsort(-truth, kind="stable")[:k])
    picked = set(np.argsort(-proxy, kind="stable")[:k])
    return len(best & picked) / k


def _check(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise SqueezelabError(f"need two equally long lists of at least 2 values, got {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise SqueezelabError("rank statistics need finite values")
    return x, y


@dataclass(frozen=True)
class Interval:
    """A statistic with its percentile-bootstrap confidence interval."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


def bootstrap(statistic: Callable[[np.ndarray, np.ndarray], float], x: Sequence[float], y: Sequence[float],
              samples: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """``statistic(x, y)`` with a percentile interval over ``samples`` resamplings of the (x, y) pairs."""
    x, y = _check(x, y)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(samples):
        index = rng.integers(0, len(x), len(x))
        value = statistic(x[index], y[index])
        if np.isfinite(value):
            values.append(value)
    alpha = (1 - level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha]) if values else (float("nan"), float("nan"))
    return Interval(float(statistic(x, y)), float(low), float(high))

"""Pareto fronts and hypervolume, every objective minimised.

:func:`hypervolume` is exact: the 2-D case sweeps the points sorted by the first objective; more
dimensions are sliced along the last objective (Hypervolume by Slicing Objectives, While et al., IEEE TEC
2006), which is fast enough for the few hundred points of a co-design front. :class:`Normalizer`
maps objectives to [0, 1] between an ideal and a nadir point, so that a hypervolume ratio does not
depend on the objectives' units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SqueezelabError


def nondominated(points: np.ndarray) -> np.ndarray:
    """A boolean mask of the points no other point dominates (<= in every objective, < in one).

    Duplicates of a nondominated point are all kept.
    """
    points = np.asarray(points, dtype=float)
    if points.ndim != 2:
        raise SqueezelabError(f"points must be a 2-D array (points x objectives), got shape {points.shape}")
    keep = np.zeros(len(points), dtype=bool)
    # In lexicographic order no point is dominated by a later one, so a point is nondominated exactly when
    # none of the nondominated points before it dominates it. Blocks of points are checked against the front
    # so far, then the survivors against each other.
    order = np.lexsort(points.T[::-1])
    front = points[:0]
    for start in range(0, len(order), _BLOCK):
        index = order[start:start + _BLOCK]
        index = index[~_dominated_by(points[index], front)]
        block = points[index]
        survivors = index[~_dominated_by(block, block)]
        keep[survivors] = True
        front = np.concatenate([front, points[survivors]])
    return keep


_BLOCK = 512


def _dominated_by(points: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Whether each of ``points`` is dominated by one of ``others``."""
    if len(others) == 0 or len(points) == 0:
        return np.zeros(len(points), dtype=bool)
    le = np.all(others[None, :, :] <= points[:, None, :], axis=2)
    lt = np.any(others[None, :, :] < points[:, None, :], axis=2)
    return np.any(le & lt, axis=1)


def _hv2(points: np.ndarray, reference: np.ndarray) -> float:
    points = points[np.argsort(points[:, 0], kind="stable")]
    best_y = np.minimum.accumulate(points[:, 1])
    right = np.append(points[1:, 0], reference[0])
    return float(np.sum((right - points[:, 0]) * (reference[1] - best_y)))


def _hv(points: np.ndarray, reference: np.ndarray) -> float:
    if len(points) == 0:
        return 0.0
    if points.shape[1] == 1:
        return float(reference[0] - points[:, 0].min())
    if points.shape[1] == 2:
        return _hv2(points, reference)
    points = points[np.argsort(points[:, -1], kind="stable")]
    levels = np.append(points[1:, -1], reference[-1])
    total = 0.0
    for i in range(len(points)):
        depth = levels[i] - points[i, -1]
        if depth > 0:
            total += depth * _hv(points[: i + 1, :-1], reference[:-1])
    return total


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """The volume dominated by ``points`` and bounded by ``reference`` (minimisation; points beyond the
    reference in any objective add nothing)."""
    points = np.asarray(points, dtype=float).reshape(-1, len(reference))
    reference = np.asarray(reference, dtype=float)
    points = points[np.all(points < reference, axis=1)]
    if len(points) == 0:
        return 0.0
    return _hv(points[nondominated(points)], reference)


@dataclass(frozen=True)
class Normalizer:
    """Objectives scaled to [0, 1] between ``ideal`` and ``nadir``; the hypervolume's reference is
    ``1 + margin`` in every objective (a margin keeps the extreme points' contribution)."""

    ideal: np.ndarray
    nadir: np.ndarray
    margin: float = 0.1

    @classmethod
    def of(cls, points: np.ndarray, margin: float = 0.1) -> "Normalizer":
        points = np.asarray(points, dtype=float)
        return cls(points.min(axis=0), points.max(axis=0), margin)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        span = np.where(self.nadir > self.ideal, self.nadir - self.ideal, 1.0)
        return (np.asarray(points, dtype=float) - self.ideal) / span

    @property
    def reference(self) -> np.ndarray:
        return np.full(len(self.ideal), 1.0 + self.margin)

    def hypervolume(self, points: np.ndarray) -> float:
        """The hypervolume of ``points`` in normalised objectives."""
        return hypervolume(self(points), self.reference)

"""Exact enumeration of a finite search space: every (architecture, accelerator) pair costed, and the true front.

The yardstick for the optimizer: its hypervolume is measured against the enumerated front's (issue 31:
every split of SqNxt-23's 21 blocks, 1,140 architectures, times a hardware grid). Costs come from
:func:`~squeezelab.search.costs.cost_matrix` (each distinct layer simulated once per accelerator), so
the enumeration costs about one trace per architecture.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..errors import SqueezelabError
from .costs import cost_matrix
from .pareto import Normalizer, nondominated
from .problem import OBJECTIVES, Problem
from .space import Architecture, Hardware

#: Refuse to enumerate more designs than this (the 1,140 x 184 sub-space holds about 210,000).
MAX_DESIGNS = 5_000_000


@dataclass(frozen=True)
class Enumeration:
    """Every feasible design's minimised objectives (``points[arch, hardware]``) and the exact front."""

    archs: list[Architecture]
    hardware: list[Hardware]
    points: np.ndarray
    feasible: np.ndarray
    front: list[tuple[int, int]]
    seconds: float

    @property
    def designs(self) -> int:
        return int(self.feasible.sum())

    def front_points(self) -> np.ndarray:
        return np.array([self.points[a, h] for a, h in self.front])

    def normalizer(self) -> Normalizer:
        """Ideal and nadir of all feasible designs: the scale every hypervolume of this space is measured in."""
        return Normalizer.of(self.points[self.feasible])

    @property
    def hypervolume(self) -> float:
        return self.normalizer().hypervolume(self.front_points())


def enumerate_problem(problem: Problem) -> Enumeration:
    """Cost every design of ``problem``'s space and find its exact Pareto front (feasible designs only)."""
    start = time.perf_counter()
    space = problem.space
    hardware = space.hardware.feasible()
    if space.arch.size() * len(hardware) > MAX_DESIGNS:
        raise SqueezelabError(f"the space holds {space.arch.size() * len(hardware):,} feasible designs, more than "
                              f"{MAX_DESIGNS:,} to enumerate; fix more choices or run an optimizer")
    archs = [arch for arch in space.arch if arch.problem() is None]
    configs = [space.hardware.config(hw) for hw in hardware]
    matrix = cost_matrix(problem.costs, archs, configs)
    proxy = np.array([problem.scorer.score(arch, problem.proxy) for arch in archs])
    per_objective = {"cycles": matrix.cycles.astype(float), "energy": matrix.energy,
                     "edp": matrix.cycles * matrix.energy, "proxy": np.broadcast_to(proxy[:, None], matrix.energy.shape)}
    points = np.stack([per_objective[o] * (-1 if OBJECTIVES[o] == "maximize" else 1) for o in problem.objectives],
                      axis=-1)
    feasible = np.ones(matrix.cycles.shape, dtype=bool)
    if problem.min_proxy is not None:
        feasible &= (proxy >= problem.min_proxy)[:, None]
    # Within one architecture the objectives that do not depend on the accelerator are equal, so a design
    # dominated by one of its own architecture is dominated: filter per architecture, then globally.
    candidates = []
    for a in range(len(archs)):
        hw_index = np.nonzero(feasible[a])[0]
        if len(hw_index):
            keep = nondominated(points[a, hw_index])
            candidates.extend((a, int(h)) for h in hw_index[keep])
    candidate_points = np.array([points[a, h] for a, h in candidates]).reshape(-1, points.shape[-1])
    front = [design for design, keep in zip(candidates, nondominated(candidate_points)) if keep]
    return Enumeration(archs, hardware, points, feasible, front, time.perf_counter() - start)

"""One call for a whole search: build the problem, optimise (or enumerate), write the front, the plots and the
hypervolume history. ``squeezelab search`` is this function's command line."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..errors import SqueezelabError
from .exact import Enumeration, enumerate_problem
from .optimize import (POPULATION, SAMPLERS, default_storage, feasible_points, hypervolume_history,
                       pareto_evaluations, run_study)
from .pareto import Normalizer
from .problem import Problem, ProxyScorer, proxy_batch
from .report import design_row, plot_history, plot_pareto, reference_rows, write_pareto
from .space import V5, SearchSpace, get_space

#: ``sampler`` value that enumerates the space instead of optimising.
EXHAUSTIVE = "exhaustive"
#: ``min_proxy`` value meaning 1.0-SqNxt-23v5's own proxy score.
V5_PROXY = "v5"


@dataclass
class SearchResult:
    """The written files, the Pareto designs (pareto.json rows) and the summary."""

    files: list[Path]
    designs: list[dict[str, Any]]
    references: list[dict[str, Any]]
    summary: dict[str, Any]


def with_hardware(space: SearchSpace, **changes: Any) -> SearchSpace:
    """``space`` with some hardware choices replaced (None values keep the space's)."""
    changes = {k: v for k, v in changes.items() if v is not None}
    return dataclasses.replace(space, hardware=dataclasses.replace(space.hardware, **changes)) if changes else space


def search(out_dir: Union[str, Path], space: Union[str, SearchSpace] = "depth21", sampler: str = "nsga2",
           trials: int = 1000, seed: int = 0, proxy: str = "params",
           objectives: Sequence[str] = ("cycles", "energy", "proxy"), min_proxy: Union[None, float, str] = None,
           extra_proxies: Sequence[str] = (), data: Optional[str] = None, storage: Optional[str] = None,
           study_name: Optional[str] = None, exact: bool = False, population: int = POPULATION,
           plots: bool = True, space_name: Optional[str] = None, mutation_prob: Optional[float] = None) -> SearchResult:
    """Search ``space`` and write ``out_dir``/pareto.json, pareto.csv, pareto.png and hypervolume.png.

    ``sampler`` is one of ``nsga2``, ``tpe``, ``random`` (an optuna study in ``storage``, default
    ``sqlite:///OUT/study.db``, continued when rerun) or ``exhaustive`` (every design; finite spaces only).
    ``exact=True`` also enumerates the space, so the hypervolume history is measured against the exact
    front. ``min_proxy`` (a number, or ``"v5"`` for 1.0-SqNxt-23v5's score) is a constraint.
    ``data`` is the CIFAR-10 folder the zero-cost proxies need; ``space_name`` labels the outputs.
    """
    out = Path(out_dir)
    space_name = space_name or (space if isinstance(space, str) else "custom")
    space = get_space(space) if isinstance(space, str) else space
    if sampler not in (*SAMPLERS, EXHAUSTIVE):
        raise SqueezelabError(f"unknown sampler {sampler!r}; choose from {', '.join((*SAMPLERS, EXHAUSTIVE))}")
    needs_data = any(p not in ("params", "macs") for p in (proxy, *extra_proxies))
    scorer = ProxyScorer(proxy_batch(data) if needs_data and data else None)
    problem = Problem(space, tuple(objectives), proxy, extra_proxies=tuple(extra_proxies), scorer=scorer)
    if min_proxy == V5_PROXY:
        problem.min_proxy = scorer.score(V5, proxy)
    elif min_proxy is not None:
        problem.min_proxy = float(min_proxy)
    start = time.perf_counter()
    enumeration: Optional[Enumeration] = None
    if sampler == EXHAUSTIVE or exact:
        enumeration = enumerate_problem(problem)
    summary: dict[str, Any] = {
        "space": space_name, "space_size": space.size(), "sampler": sampler, "seed": seed, "objectives": list(objectives),
        "proxy": proxy, "min_proxy": problem.min_proxy, "area_budget": space.hardware.budget,
        "kib_per_pe": space.hardware.kib_per_pe, "base_accelerator": space.hardware.base,
        "input_size": problem.input_size}
    histories = {}
    if sampler == EXHAUSTIVE:
        assert enumeration is not None
        evaluations = [problem.evaluate(enumeration.archs[a], enumeration.hardware[h]) for a, h in enumeration.front]
        all_points = enumeration.points[enumeration.feasible]
        summary["trials"] = enumeration.designs
    else:
        storage = storage or default_storage(out)
        if storage.startswith("sqlite:///"):
            Path(storage[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        name = study_name or f"{space_name}-{sampler}-{proxy}-seed{seed}"
        study = run_study(problem, trials, sampler, seed, storage, name, population, mutation_prob)
        evaluations = pareto_evaluations(problem, study)
        _, all_points = feasible_points(problem, study)
        normalizer = enumeration.normalizer() if enumeration else Normalizer.of(all_points)
        history = hypervolume_history(problem, study, normalizer)
        histories[sampler] = [history]
        summary.update(trials=len(history.trials) and int(history.trials[-1]), storage=storage, study_name=name,
                       hypervolume_history={"trials": history.trials.tolist(),
                                            "hypervolume": history.hypervolume.tolist()})
    if enumeration is not None:
        summary["exact"] = {"designs": enumeration.designs, "front": len(enumeration.front),
                            "hypervolume": enumeration.hypervolume, "seconds": enumeration.seconds}
        if histories:
            summary["exact"]["found_share"] = histories[sampler][0].hypervolume[-1] / enumeration.hypervolume
    summary["seconds"] = time.perf_counter() - start
    designs = sorted((design_row(problem, e) for e in evaluations), key=lambda r: r["cycles"])
    references = reference_rows(problem)
    files = write_pareto(out, summary, designs, references)
    if plots:
        axes = _cycles_energy(problem, all_points)
        title = (f"{space_name}: {len(designs)} Pareto designs of {summary['trials']} ({sampler}), area <= "
                 f"{space.hardware.budget:g} PE-equivalents")
        files.append(plot_pareto(out / "pareto.png", axes, designs, references, proxy, title))
        if histories:
            files.append(plot_history(out / "hypervolume.png", histories,
                                      enumeration.hypervolume if enumeration else None,
                                      f"{space_name}: hypervolume of the feasible front"))
    return SearchResult(files, designs, references, summary)


def _cycles_energy(problem: Problem, points: np.ndarray) -> np.ndarray:
    """The (cycles, energy) columns of minimised objective values, where the objectives include both."""
    if "cycles" in problem.objectives and "energy" in problem.objectives and len(points):
        return points[:, [problem.objectives.index("cycles"), problem.objectives.index("energy")]]
    return np.zeros((0, 2))

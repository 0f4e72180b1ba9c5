"""The optimizer: an optuna study over a :class:`~squeezelab.search.problem.Problem`, resumable through its storage.

Samplers: NSGA-II with constraints (Deb et al., IEEE TEC 2002; optuna's ``NSGAIISampler`` with
``constraints_func``), multi-objective TPE with constraints (``TPESampler``) to compare, and random
sampling. Every trial records its design and costs as user attributes, so the study alone rebuilds the
Pareto front. The study lives in an optuna storage: a SQLite file by default, or any SQLAlchemy URL
(``postgresql://...``) that several workers or machines share; rerunning with the same storage and study
name continues it up to the requested number of trials.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ..errors import SqueezelabError
from ..extras import require
from .pareto import Normalizer, nondominated
from .problem import Evaluation, Problem
from .space import Architecture, Hardware

SAMPLERS = ("nsga2", "tpe", "random")
#: NSGA-II's population (optuna's default): 20 generations in 1,000 trials.
POPULATION = 50
#: Trial attribute holding the constraint values (each feasible when <= 0).
CONSTRAINTS = "constraints"


def default_storage(out_dir: str | Path) -> str:
    """The SQLite storage in ``out_dir`` (``sqlite:///OUT/study.db``)."""
    return f"sqlite:///{Path(out_dir).resolve() / 'study.db'}"


def _constraints(trial: Any) -> list[float]:
    return trial.user_attrs[CONSTRAINTS]


def _constraint_keywords(optuna: Any) -> dict[str, Any]:
    """Optuna >= 5 reads the constraints a trial sets (``Trial.set_constraint``); older samplers take a function."""
    return {} if hasattr(optuna.trial.Trial, "set_constraint") else {"constraints_func": _constraints}


def make_sampler(name: str, seed: int, population: int = POPULATION, mutation_prob: Optional[float] = None) -> Any:
    """An optuna sampler; ``population`` and ``mutation_prob`` (default 1 / parameters) are NSGA-II's."""
    optuna = require("optuna", "squeezelab search")
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=population, mutation_prob=mutation_prob, seed=seed,
                                             **_constraint_keywords(optuna))
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, **_constraint_keywords(optuna))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise SqueezelabError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")


def objective_function(problem: Problem) -> Callable[[Any], list[float]]:
    """The optuna objective: suggest a design, cost it, record it; an unbuildable design is pruned."""
    optuna = require("optuna", "squeezelab search")

    def objective(trial: Any) -> list[float]:
        arch = problem.space.arch.suggest(trial)
        hardware = problem.space.hardware.suggest(trial)
        trial.set_user_attr("arch", arch.to_dict())
        trial.set_user_attr("hardware", hardware.to_dict())
        try:
            evaluation = problem.evaluate(arch, hardware)
        except SqueezelabError as exc:
            trial.set_user_attr("problem", str(exc))
            raise optuna.TrialPruned(str(exc)) from None
        constraints = problem.constraints(evaluation)
        trial.set_user_attr(CONSTRAINTS, constraints)
        if hasattr(trial, "set_constraint"):
            for name, value in zip(problem.constraint_names, constraints):
                trial.set_constraint(name, value)
        trial.set_user_attr("cost", evaluation.cost.to_dict())
        trial.set_user_attr("proxies", evaluation.proxies)
        trial.set_user_attr("area", evaluation.area)
        return [evaluation.objective(o, problem.proxy) for o in problem.objectives]

    return objective


def run_study(problem: Problem, trials: int, sampler: str = "nsga2", seed: int = 0, storage: Optional[str] = None,
              study_name: str = "squeezelab-search", population: int = POPULATION,
              mutation_prob: Optional[float] = None) -> Any:
    """Run (or continue) the study until it holds ``trials`` finished trials; returns the ``optuna.Study``.

    ``storage`` is an optuna storage URL (default: in memory); a study of the same name in it is continued,
    provided its objectives match.
    """
    optuna = require("optuna", "squeezelab search")
    optuna.logging.set_verbosity(logging.WARNING)
    study = optuna.create_study(study_name=study_name, storage=storage, load_if_exists=True,
                                directions=problem.directions,
                                sampler=make_sampler(sampler, seed, population, mutation_prob))
    if [d.name.lower() for d in study.directions] != problem.directions:
        raise SqueezelabError(f"study {study_name!r} in {storage} optimises {len(study.directions)} other objectives; "
                              "use another --study-name or storage")
    expected = {"objectives": list(problem.objectives), "proxy": problem.proxy}
    recorded = study.user_attrs.get("problem")
    if recorded is None:
        study.set_user_attr("problem", expected)
    elif recorded != expected:
        raise SqueezelabError(f"study {study_name!r} was run with {recorded}, not {expected}; use another "
                              "--study-name or storage")
    done = len(finished_trials(study))
    if done < trials:
        study.optimize(objective_function(problem), n_trials=trials - done)
    return study


def finished_trials(study: Any) -> list[Any]:
    """Complete and pruned (unbuildable) trials, in the order they were created."""
    optuna = require("optuna", "squeezelab search")
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return sorted(study.get_trials(deepcopy=False, states=states), key=lambda t: t.number)


def trial_design(trial: Any) -> tuple[Architecture, Hardware]:
    return Architecture.from_dict(trial.user_attrs["arch"]), Hardware(**trial.user_attrs["hardware"])


@dataclass(frozen=True)
class History:
    """Hypervolume of the feasible designs found after each trial, in normalised objectives."""

    trials: np.ndarray
    hypervolume: np.ndarray

    def reached(self, target: float) -> Optional[int]:
        """The first trial count at which the hypervolume reaches ``target``, or None."""
        hit = np.nonzero(self.hypervolume >= target)[0]
        return int(self.trials[hit[0]]) if len(hit) else None


def feasible_points(problem: Problem, study: Any) -> tuple[list[int], np.ndarray]:
    """(trial numbers, minimised objective values) of the complete, feasible trials."""
    numbers, points = [], []
    for trial in finished_trials(study):
        if trial.values is None or any(v > 1e-9 for v in trial.user_attrs[CONSTRAINTS]):
            continue
        numbers.append(trial.number)
        points.append([v * (-1 if d == "maximize" else 1) for v, d in zip(trial.values, problem.directions)])
    return numbers, np.array(points, dtype=float).reshape(-1, len(problem.objectives))


def hypervolume_history(problem: Problem, study: Any, normalizer: Normalizer, every: int = 10) -> History:
    """The hypervolume of the feasible front after every ``every`` trials (and after the last)."""
    trials = finished_trials(study)
    order = {t.number: i + 1 for i, t in enumerate(trials)}
    numbers, points = feasible_points(problem, study)
    position = np.array([order[n] for n in numbers], dtype=int)
    checkpoints = sorted(set(range(every, len(trials) + 1, every)) | {len(trials)})
    values, front = [], np.zeros((0, points.shape[1]))
    seen = 0
    for count in checkpoints:
        new = points[(position > seen) & (position <= count)]
        if len(new):
            front = np.concatenate([front, new])
            front = front[nondominated(front)]
        values.append(normalizer.hypervolume(front) if len(front) else 0.0)
        seen = count
    return History(np.array(checkpoints), np.array(values))


def pareto_evaluations(problem: Problem, study: Any) -> list[Evaluation]:
    """The feasible Pareto-optimal designs of the study, re-evaluated (the costs are cached), one per design."""
    numbers, points = feasible_points(problem, study)
    if not len(points):
        return []
    by_number = {t.number: t for t in finished_trials(study)}
    designs = dict.fromkeys(trial_design(by_number[n]) for n, keep in zip(numbers, nondominated(points)) if keep)
    return [problem.evaluate(arch, hardware) for arch, hardware in designs]

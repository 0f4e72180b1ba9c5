"""What a design is worth: hardware costs on its accelerator, an accuracy proxy, its area; and which objectives
and constraints a search puts on them.

Proxies are scored on the CIFAR-10 form of the architecture (10 classes, 32 px, the small-input stem),
the form the short-training validation trains (benchmarks/proxy_validation.py); costs on the ImageNet
form at 227 px, the form the paper simulates (:data:`~squeezelab.search.costs.INPUT_SIZE`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from ..data.datasets import build_datasets
from ..errors import SqueezelabError
from ..models import create_model, trace_model
from .costs import INPUT_SIZE, CostModel, DesignCost, squeezenext_params
from .proxies import PROXIES, ZERO_COST, zero_cost_scores
from .space import MODEL, Architecture, Hardware, SearchSpace

#: The proxies' network: CIFAR-10's classes and image size.
PROXY_CLASSES = 10
PROXY_INPUT_SIZE = 32
#: Images in the batch the data-dependent zero-cost proxies see (Abdelfattah et al. 2021 use 64 on CIFAR-10).
PROXY_BATCH = 64
#: Objective -> direction. ``proxy`` is the chosen accuracy proxy's value, maximised.
OBJECTIVES = {"cycles": "minimize", "energy": "minimize", "edp": "minimize", "proxy": "maximize"}


def proxy_batch(data_dir: str | Path, size: int = PROXY_BATCH, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed batch of CIFAR-10 training images (evaluation preprocessing) and labels for the zero-cost proxies."""
    bundle = build_datasets(f"cifar10:{data_dir}", PROXY_INPUT_SIZE, augment=False, train_limit=size, seed=seed)
    images, labels = zip(*(bundle.train[i] for i in range(len(bundle.train))))
    return torch.stack(images), torch.tensor(labels)


class ProxyScorer:
    """Accuracy proxies of architectures, cached per architecture.

    ``params`` and ``macs`` need nothing; the zero-cost proxies need ``batch`` (:func:`proxy_batch`) and
    score a network initialised from ``init_seed``. ``short_training`` is not scored here: it trains
    (benchmarks/proxy_validation.py) and serves to confirm designs, not to search.
    """

    def __init__(self, batch: Optional[tuple[torch.Tensor, torch.Tensor]] = None, init_seed: int = 0) -> None:
        self.batch = batch
        self.init_seed = init_seed
        self._cache: dict[tuple[Architecture, str], float] = {}

    def score(self, arch: Architecture, name: str) -> float:
        key = (arch, name)
        if key not in self._cache:
            self._cache[key] = self._score(arch, name)
        return self._cache[key]

    def _score(self, arch: Architecture, name: str) -> float:
        if name in ("params", "macs"):
            traced = trace_model(MODEL, PROXY_INPUT_SIZE, num_classes=PROXY_CLASSES, small_input=True,
                                 **arch.model_kwargs)
            return float(squeezenext_params(traced.layers) if name == "params" else traced.macs)
        if name in ZERO_COST:
            if self.batch is None:
                raise SqueezelabError(f"proxy {name} needs CIFAR-10 images; pass --data DIR (the folder of the "
                                      "CIFAR-10 zips) or use --proxy params")
            torch.manual_seed(self.init_seed)
            model = create_model(MODEL, num_classes=PROXY_CLASSES, small_input=True, **arch.model_kwargs)
            return zero_cost_scores(model, *self.batch, names=[name])[name]
        if name == "short_training":
            raise SqueezelabError("short_training is measured by benchmarks/proxy_validation.py, not in a search; "
                                  "search with params or a zero-cost proxy")
        raise SqueezelabError(f"unknown proxy {name!r}; choose from {', '.join(PROXIES)}")


@dataclass(frozen=True)
class Evaluation:
    """One design: architecture, accelerator, costs, area and proxy values."""

    arch: Architecture
    hardware: Hardware
    cost: DesignCost
    area: float
    proxies: dict[str, float]

    def objective(self, name: str, proxy: str) -> float:
        if name == "proxy":
            return self.proxies[proxy]
        if name == "edp":
            return self.cost.edp
        return float(getattr(self.cost, name))

    def to_dict(self, config: dict[str, Any]) -> dict[str, Any]:
        """A row of pareto.json: ``model`` + ``model_kwargs`` for ``create_model``, the spec ``simulate`` reads,
        the accelerator (search parameters and full config), costs, area and proxies."""
        return {"model": MODEL, "model_kwargs": self.arch.model_kwargs, "spec": self.arch.spec,
                "hardware": self.hardware.to_dict(), "accelerator": config, "area": self.area,
                **self.cost.to_dict(), "proxies": self.proxies}


@dataclass
class Problem:
    """A search: the space, the objectives and the constraints.

    Constraints: the area budget of ``space.hardware``, and optionally ``min_proxy`` (the proxy at least that).
    ``extra_proxies`` are scored and recorded for every design without being optimised.
    """

    space: SearchSpace
    objectives: tuple[str, ...] = ("cycles", "energy", "proxy")
    proxy: str = "params"
    min_proxy: Optional[float] = None
    extra_proxies: tuple[str, ...] = ()
    input_size: int = INPUT_SIZE
    scorer: ProxyScorer = field(default_factory=ProxyScorer)
    costs: CostModel = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        unknown = [o for o in self.objectives if o not in OBJECTIVES]
        if unknown or not self.objectives or len(set(self.objectives)) != len(self.objectives):
            raise SqueezelabError(f"objectives must be distinct names from {', '.join(OBJECTIVES)}, got "
                                  f"{', '.join(self.objectives)}")
        if self.proxy not in PROXIES:
            raise SqueezelabError(f"unknown proxy {self.proxy!r}; choose from {', '.join(PROXIES)}")
        if self.costs is None:
            self.costs = CostModel(self.input_size)

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o] for o in self.objectives]

    def evaluate(self, arch: Architecture, hardware: Hardware) -> Evaluation:
        """Costs, area and proxies of one design (a :class:`SqueezelabError` if SqueezeNext cannot build it)."""
        config = self.space.hardware.config(hardware)
        cost = self.costs.cost(arch, config)
        names = dict.fromkeys((self.proxy, *self.extra_proxies))
        proxies = {name: self.scorer.score(arch, name) for name in names}
        return Evaluation(arch, hardware, cost, hardware.area(self.space.hardware.kib_per_pe), proxies)

    @property
    def constraint_names(self) -> list[str]:
        return ["area"] + (["min_proxy"] if self.min_proxy is not None else [])

    def constraints(self, evaluation: Evaluation) -> list[float]:
        """Constraint values, each feasible when <= 0: area over budget, proxy under ``min_proxy``."""
        values = [evaluation.area - self.space.hardware.budget]
        if self.min_proxy is not None:
            values.append(self.min_proxy - evaluation.proxies[self.proxy])
        return values

    def feasible(self, evaluation: Evaluation) -> bool:
        return all(v <= 1e-9 for v in self.constraints(evaluation))

    def minimised(self, evaluation: Evaluation) -> list[float]:
        """The objective values, each negated where maximised (all minimised: Pareto and hypervolume code)."""
        return [evaluation.objective(o, self.proxy) * (-1 if OBJECTIVES[o] == "maximize" else 1)
                for o in self.objectives]

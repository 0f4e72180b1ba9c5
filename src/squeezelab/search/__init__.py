"""Hardware-aware co-design search: SqueezeNext architectures and systolic-array accelerators (docs/codesign.md).

SqueezeNext's §6 moved blocks between stages by hand after simulating each layer (v1 -> v5). This stage
searches those choices, and the accelerator's, with exact per-layer costs (:mod:`.costs`, the simulator
of :mod:`squeezelab.hwsim`), validated accuracy proxies (:mod:`.proxies`, :mod:`.ranking`), optuna's
NSGA-II or TPE (:mod:`.optimize`) and an exact enumeration to measure them against (:mod:`.exact`).
"""

from .costs import CostModel, DesignCost, cost_matrix
from .exact import Enumeration, enumerate_problem
from .optimize import SAMPLERS, History, hypervolume_history, run_study
from .pareto import Normalizer, hypervolume, nondominated
from .problem import Evaluation, Problem, ProxyScorer, proxy_batch
from .proxies import PROXIES, ZERO_COST, zero_cost_scores
from .ranking import bootstrap, kendall_tau, spearman_rho, top_k_recall
from .run import EXHAUSTIVE, SearchResult, search
from .space import (MODEL, PAPER_SEQUENCE, REFERENCES, SPACES, ArchSpace, Architecture, Hardware, HardwareSpace,
                    SearchSpace, get_space)

__all__ = [
    "ArchSpace", "Architecture", "CostModel", "DesignCost", "EXHAUSTIVE", "Enumeration", "Evaluation", "Hardware",
    "HardwareSpace", "History", "MODEL", "Normalizer", "PAPER_SEQUENCE", "PROXIES", "Problem", "ProxyScorer",
    "REFERENCES", "SAMPLERS", "SPACES", "SearchResult", "SearchSpace", "ZERO_COST", "bootstrap",
    "cost_matrix", "enumerate_problem", "get_space", "hypervolume", "hypervolume_history", "kendall_tau",
    "nondominated", "proxy_batch", "run_study", "search", "spearman_rho", "top_k_recall", "zero_cost_scores",
]

"""Exact hardware costs of a design, from per-layer simulations cached by (layer geometry, accelerator).

A network's cycles, energy and traffic are sums over its PE layers (shared/reference/hwsim.md §3.3-3.5:
every quantity, stalls included, is per layer), and a layer's numbers depend only on its geometry and the
accelerator. So a design is costed from its *profile*, the multiset of its layer geometries (read from the
one layer trace, :func:`squeezelab.models.trace_model`), and each (geometry, accelerator) pair is
simulated once (:func:`squeezelab.hwsim.simulate_layer`). :func:`cost_matrix` costs many architectures on
many accelerators at once as a matrix product, for exact enumeration.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Iterable, Optional, Sequence

import numpy as np

from ..hwsim import AcceleratorConfig, LayerResult, simulate_layer
from ..hwsim.sim import ENERGY_LEVELS
from ..models import LayerSpec, trace_model
from ..models.tracing import InputSize
from .space import MODEL, Architecture

#: ImageNet crop of the Caffe prototxts: the paper's simulations run at 227 x 227 (hwsim.md T1).
INPUT_SIZE = 227
Geometry = tuple


@dataclass(frozen=True)
class Profile:
    """What the costs of one architecture depend on: its PE-layer geometries with their counts, and its size."""

    geometries: tuple[tuple[Geometry, int], ...]
    macs: int
    params: int
    layers: int


def squeezenext_params(layers: Iterable[LayerSpec]) -> int:
    """Trainable parameters from a SqueezeNext trace: conv and FC weights (bias-free, Figure 2) and BN scale and
    shift (two per channel); equals ``count_params(create_model(...))`` (tests/test_search.py)."""
    total = 0
    for layer in layers:
        if layer.is_pe:
            total += layer.groups * layer.K * layer.Q
        elif layer.kind == "norm":
            total += 2 * layer.output_shape[0]
    return total


def profile_layers(layers: Sequence[LayerSpec]) -> Profile:
    pe = [layer for layer in layers if layer.is_pe]
    counts = Counter(layer.geometry for layer in pe)
    return Profile(tuple(counts.items()), sum(layer.macs for layer in pe), squeezenext_params(layers), len(pe))


@dataclass(frozen=True)
class DesignCost:
    """One architecture on one accelerator: the network totals of ``squeezelab simulate``."""

    cycles: int
    energy: float
    utilization: float
    macs: int
    params: int
    dram_words: int
    sram_words: int
    stall_cycles: int
    energy_by_level: dict[str, float]
    energy_unit: str

    @property
    def edp(self) -> float:
        """Energy-delay product, energy x cycles."""
        return self.energy * self.cycles

    def to_dict(self) -> dict:
        return {**asdict(self), "edp": self.edp}


class CostModel:
    """Costs of architectures on accelerators, exact, with per-layer results cached by (geometry, accelerator).

    ``hits`` and ``misses`` count the layer cache's lookups; ``profile`` caches each architecture's trace.
    """

    def __init__(self, input_size: InputSize = INPUT_SIZE) -> None:
        self.input_size = input_size
        self._layers: dict[tuple[Geometry, AcceleratorConfig], LayerResult] = {}
        self._profiles: dict[Architecture, Profile] = {}
        self.hits = 0
        self.misses = 0

    def profile(self, arch: Architecture) -> Profile:
        """The architecture's layer geometries (a :class:`SqueezelabError` if the design is not buildable)."""
        if arch not in self._profiles:
            traced = trace_model(MODEL, self.input_size, **arch.model_kwargs)
            self._profiles[arch] = profile_layers(traced.layers)
        return self._profiles[arch]

    def layer(self, geometry: Geometry, config: AcceleratorConfig) -> LayerResult:
        key = (geometry, config)
        result = self._layers.get(key)
        if result is None:
            self.misses += 1
            result = self._layers[key] = simulate_layer(LayerSpec.from_geometry(geometry), config)
        else:
            self.hits += 1
        return result

    def cost(self, arch: Architecture, config: AcceleratorConfig) -> DesignCost:
        profile = self.profile(arch)
        cycles = energy = dram = sram = stall = 0
        levels = dict.fromkeys(ENERGY_LEVELS, 0.0)
        for geometry, count in profile.geometries:
            r = self.layer(geometry, config)
            cycles += count * r.cycles
            energy += count * r.energy
            dram += count * r.dram_words
            sram += count * r.sram_words
            stall += count * r.stall_cycles
            for level in ENERGY_LEVELS:
                levels[level] += count * getattr(r, f"energy_{level}")
        return DesignCost(cycles=cycles, energy=energy, utilization=profile.macs / (config.array_rows *
                          config.array_cols * cycles), macs=profile.macs, params=profile.params, dram_words=dram,
                          sram_words=sram, stall_cycles=stall, energy_by_level=levels,
                          energy_unit=config.costs.unit)


@dataclass(frozen=True)
class CostMatrix:
    """Cycles, energy and utilisation of every architecture (rows) on every accelerator (columns)."""

    cycles: np.ndarray
    energy: np.ndarray
    utilization: np.ndarray
    macs: np.ndarray
    params: np.ndarray


def cost_matrix(model: CostModel, archs: Sequence[Architecture], configs: Sequence[AcceleratorConfig],
                profiles: Optional[Sequence[Profile]] = None) -> CostMatrix:
    """:meth:`CostModel.cost`'s cycles and energy for every (architecture, accelerator) pair as a matrix product:
    (architectures x geometries) layer counts times (geometries x accelerators) per-layer costs."""
    profiles = profiles if profiles is not None else [model.profile(arch) for arch in archs]
    index: dict[Geometry, int] = {}
    for profile in profiles:
        for geometry, _ in profile.geometries:
            index.setdefault(geometry, len(index))
    counts = np.zeros((len(profiles), len(index)), dtype=np.int64)
    for row, profile in enumerate(profiles):
        for geometry, count in profile.geometries:
            counts[row, index[geometry]] = count
    layer_cycles = np.zeros((len(index), len(configs)), dtype=np.int64)
    layer_energy = np.zeros((len(index), len(configs)))
    for col, config in enumerate(configs):
        for geometry, row in index.items():
            result = model.layer(geometry, config)
            layer_cycles[row, col], layer_energy[row, col] = result.cycles, result.energy
    cycles = counts @ layer_cycles
    macs = np.array([p.macs for p in profiles], dtype=np.int64)
    pes = np.array([c.array_rows * c.array_cols for c in configs], dtype=np.int64)
    return CostMatrix(cycles=cycles, energy=counts.astype(float) @ layer_energy,
                      utilization=macs[:, None] / (pes[None, :] * cycles), macs=macs,
                      params=np.array([p.params for p in profiles], dtype=np.int64))

"""The analytical simulator: SCALE-Sim's cycle model in closed form, traffic and energy.

hwsim.md T6 (cycles), T8 and §3.4 (SRAM/DRAM traffic, stalls), §3.5 (energy).
Each group of a grouped conv is simulated as its own layer, back to back, as
SCALE-Sim does for a ``DP`` (depthwise) layer. The layers come from the core's
layer trace (:func:`squeezelab.models.trace`); a layer's result depends only on
its geometry, the accelerator and the dataflow, so it is computed once per
(geometry, config, dataflow) and reused by every network that has the layer.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from functools import lru_cache
from typing import Optional, Sequence, Union

from torch import nn

from ..errors import SqueezelabError
from ..models.tracing import InputSize, LayerSpec, input_hw, pe_layers, trace, trace_model, zero_cycle_ops
from .config import AcceleratorConfig, resolve_config

ENERGY_LEVELS = ("mac", "rf", "noc", "glb", "dram", "static")


@dataclass(frozen=True)
class LayerResult:
    """One layer on the accelerator. ``cycles`` = compute + stall; compute = folds x cycles per fold."""

    name: str
    stage: str
    kind: str
    height: int
    width: int
    channels: int
    filters: int
    kernel_h: int
    kernel_w: int
    stride: int
    groups: int
    macs: int
    dataflow: str
    folds_r: int
    folds_c: int
    cycles_per_fold: int
    mapping_eff: float
    utilization: float
    compute_cycles: int
    stall_cycles: int
    cycles: int
    seconds: float
    sram_ifmap_reads: int
    sram_filter_reads: int
    sram_ofmap_writes: int
    sram_ofmap_reads: int
    dram_ifmap_reads: int
    dram_filter_reads: int
    dram_ofmap_writes: int
    dram_ofmap_reads: int
    dram_bytes_per_cycle: float
    energy_mac: float
    energy_rf: float
    energy_noc: float
    energy_glb: float
    energy_dram: float
    energy_static: float
    energy: float

    @property
    def folds(self) -> int:
        return self.groups * self.folds_r * self.folds_c

    @property
    def sram_words(self) -> int:
        return self.sram_ifmap_reads + self.sram_filter_reads + self.sram_ofmap_writes + self.sram_ofmap_reads

    @property
    def dram_words(self) -> int:
        return self.dram_ifmap_reads + self.dram_filter_reads + self.dram_ofmap_writes + self.dram_ofmap_reads

    def energy_breakdown(self) -> dict[str, float]:
        return {level: getattr(self, f"energy_{level}") for level in ENERGY_LEVELS}

    def to_dict(self) -> dict:
        return asdict(self)


def _spatio_temporal(dataflow: str, P: int, K: int, Q: int) -> tuple[int, int, int]:
    """(S_r, S_c, T) of hwsim.md T6: the two dimensions mapped on rows/cols and the streamed one."""
    if dataflow == "ws":
        return K, Q, P
    if dataflow == "os":
        return P, Q, K
    return K, P, Q


#: Layer results kept by (geometry, config, dataflow); a design search meets the same layers again and again.
LAYER_CACHE_SIZE = 1 << 16


def simulate_layer(layer: LayerSpec, config: AcceleratorConfig, dataflow: Optional[str] = None) -> LayerResult:
    """Simulate one conv / FC layer; ``dataflow`` overrides the config's (``best`` picks the fastest)."""
    if not layer.is_pe:
        raise SqueezelabError(f"layer {layer.name} ({layer.kind}) uses no PE-array cycles")
    dataflow = dataflow or config.dataflow
    if dataflow == "best":
        candidates = [_cached_result(layer.geometry, config, df) for df in ("ws", "os", "is")]
        result = min(candidates, key=lambda r: (r.cycles, r.energy))
    else:
        result = _cached_result(layer.geometry, config, dataflow)
    return replace(result, name=layer.name, stage=layer.stage)


@lru_cache(maxsize=LAYER_CACHE_SIZE)
def _cached_result(geometry: tuple, config: AcceleratorConfig, dataflow: str) -> LayerResult:
    """The result of an unnamed layer of ``geometry`` (names are the caller's to add)."""
    return _simulate(LayerSpec.from_geometry(geometry), config, dataflow)


def _simulate(layer: LayerSpec, config: AcceleratorConfig, dataflow: str) -> LayerResult:
    if dataflow not in ("ws", "os", "is"):
        raise SqueezelabError(f"dataflow {dataflow!r} is not one of ws, os, is, best")
    rows, cols, g = config.array_rows, config.array_cols, layer.groups
    P, K, Q = layer.P, layer.K, layer.Q
    s_r, s_c, t = _spatio_temporal(dataflow, P, K, Q)
    folds_r, folds_c = math.ceil(s_r / rows), math.ceil(s_c / cols)
    preload = rows if dataflow in ("ws", "is") else 0
    per_fold = preload + rows + cols + t - 2
    compute = g * folds_r * folds_c * per_fold
    mapping_eff = (s_r * s_c) / (folds_r * rows * folds_c * cols)

    # SRAM (global buffer) words, hwsim.md T8 without SCALE-Sim's OS write artifact.
    psum_passes = folds_r if dataflow in ("ws", "is") else 1
    if dataflow == "ws":
        sram_if, sram_f = P * K * folds_c, K * Q
    elif dataflow == "os":
        sram_if, sram_f = P * K * folds_c, K * Q * folds_r
    else:
        sram_if, sram_f = K * P, Q * K * folds_c
    # Partial sums are read back through the GLB on every row fold after the first, also when they
    # spill to DRAM (they are staged in the GLB), so every DRAM word has a GLB access (§3.4 bound).
    sram_of_w = P * Q * psum_passes
    sram_of_r = P * Q * (psum_passes - 1)
    spill_to_dram = config.psum_spill == "dram"

    # DRAM words, hwsim.md §3.4: compulsory, plus re-fetches of an operand that does not fit its GLB share.
    capacity = config.operand_capacity_words
    ifmap_unique = min(layer.in_height * layer.in_width * (layer.channels // g), P * K)
    filter_unique = K * Q
    ifmap_refetch = folds_c if dataflow in ("ws", "os") and ifmap_unique > capacity else 1
    filter_refetch = {"ws": 1, "os": folds_r, "is": folds_c}[dataflow] if filter_unique > capacity else 1
    dram_if = ifmap_unique * ifmap_refetch
    dram_f = filter_unique * filter_refetch
    dram_of_w = P * Q * (psum_passes if spill_to_dram else 1)
    dram_of_r = P * Q * (psum_passes - 1) if spill_to_dram else 0
    if config.keep_activations_on_chip:
        if g * ifmap_unique <= capacity:
            dram_if = 0
        if g * P * Q <= capacity and not spill_to_dram:
            dram_of_w = 0
    sram = [g * v for v in (sram_if, sram_f, sram_of_w, sram_of_r)]
    dram = [g * v for v in (dram_if, dram_f, dram_of_w, dram_of_r)]

    dram_bytes = sum(dram) * config.word_bytes
    bw = config.dram_bw_bytes_per_cycle
    stall = max(0, math.ceil(dram_bytes / bw) - compute) if bw is not None else 0
    total = compute + stall
    seconds = total / config.clock_hz
    macs = layer.macs

    costs = config.costs
    rf_per_mac = config.rf_per_mac if config.rf_per_mac is not None else (2.0 if dataflow == "os" else 1.0)
    noc_per_mac = config.noc_per_mac if config.noc_per_mac is not None else 2.0
    e_mac = macs * costs.mac
    e_rf = rf_per_mac * macs * costs.rf
    e_noc = noc_per_mac * macs * costs.noc
    e_glb = sum(sram) * costs.glb
    e_dram = sum(dram) * costs.dram
    e_static = costs.static_per_cycle * total + costs.static_mw * 1e-3 * seconds * 1e12
    return LayerResult(
        name=layer.name, stage=layer.stage, kind=layer.kind, height=layer.height, width=layer.width,
        channels=layer.channels, filters=layer.filters, kernel_h=layer.kernel_h, kernel_w=layer.kernel_w,
        stride=layer.stride_h, groups=g, macs=macs, dataflow=dataflow, folds_r=folds_r, folds_c=folds_c,
        cycles_per_fold=per_fold, mapping_eff=mapping_eff, utilization=macs / (rows * cols * total),
        compute_cycles=compute, stall_cycles=stall, cycles=total, seconds=seconds,
        sram_ifmap_reads=sram[0], sram_filter_reads=sram[1], sram_ofmap_writes=sram[2], sram_ofmap_reads=sram[3],
        dram_ifmap_reads=dram[0], dram_filter_reads=dram[1], dram_ofmap_writes=dram[2], dram_ofmap_reads=dram[3],
        dram_bytes_per_cycle=dram_bytes / total, energy_mac=e_mac, energy_rf=e_rf, energy_noc=e_noc,
        energy_glb=e_glb, energy_dram=e_dram, energy_static=e_static,
        energy=e_mac + e_rf + e_noc + e_glb + e_dram + e_static,
    )


@dataclass
class Totals:
    """Sums over a set of layers (a stage or the network)."""

    name: str
    layers: int
    macs: int
    compute_cycles: int
    stall_cycles: int
    cycles: int
    seconds: float
    utilization: float
    sram_words: int
    dram_words: int
    energy: float
    energy_per_mac: float
    energy_by_level: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, name: str, results: list[LayerResult], pes: int) -> "Totals":
        cycles = sum(r.cycles for r in results)
        macs = sum(r.macs for r in results)
        energy = sum(r.energy for r in results)
        return cls(
            name=name, layers=len(results), macs=macs, compute_cycles=sum(r.compute_cycles for r in results),
            stall_cycles=sum(r.stall_cycles for r in results), cycles=cycles,
            seconds=sum(r.seconds for r in results), utilization=macs / (pes * cycles) if cycles else 0.0,
            sram_words=sum(r.sram_words for r in results), dram_words=sum(r.dram_words for r in results),
            energy=energy, energy_per_mac=energy / macs if macs else 0.0,
            energy_by_level={level: sum(getattr(r, f"energy_{level}") for r in results) for level in ENERGY_LEVELS},
        )


@dataclass
class SimResult:
    """A whole network on one accelerator: per-layer records, zero-cycle ops, stage and network totals."""

    model: str
    input_size: tuple[int, int]
    config: AcceleratorConfig
    layers: list[LayerResult]
    zero_cycle_ops: list[LayerSpec]

    @property
    def total(self) -> Totals:
        return Totals.of("total", self.layers, self.config.array_rows * self.config.array_cols)

    @property
    def macs(self) -> int:
        return self.total.macs

    @property
    def cycles(self) -> int:
        return self.total.cycles

    @property
    def energy(self) -> float:
        return self.total.energy

    @property
    def seconds(self) -> float:
        return self.total.seconds

    @property
    def utilization(self) -> float:
        return self.total.utilization

    @property
    def energy_unit(self) -> str:
        return self.config.costs.unit

    def stages(self) -> list[Totals]:
        """Totals per stage, in order of first appearance."""
        order: dict[str, list[LayerResult]] = {}
        for r in self.layers:
            order.setdefault(r.stage, []).append(r)
        pes = self.config.array_rows * self.config.array_cols
        return [Totals.of(stage, rs, pes) for stage, rs in order.items()]

    def stage(self, name: str) -> Totals:
        for totals in self.stages():
            if totals.name == name:
                return totals
        raise SqueezelabError(f"{self.model} has no stage {name!r}; stages: "
                              f"{', '.join(t.name for t in self.stages())}")

    def to_dict(self) -> dict:
        return {
            "model": self.model, "input_size": list(self.input_size), "config": self.config.to_dict(),
            "energy_unit": self.energy_unit, "total": asdict(self.total),
            "stages": [asdict(s) for s in self.stages()],
            "layers": [r.to_dict() for r in self.layers],
            "zero_cycle_ops": [{"name": op.name, "stage": op.stage, "kind": op.kind, "elements": op.elements}
                               for op in self.zero_cycle_ops],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_csv(self) -> str:
        """One row per PE layer, the columns of :class:`LayerResult` (hwsim.md §3.6)."""
        names = [f.name for f in fields(LayerResult)]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(names)
        for r in self.layers:
            writer.writerow([getattr(r, n) for n in names])
        return buf.getvalue()


def simulate_layers(layers: Sequence[LayerSpec], config: Union[str, AcceleratorConfig, dict, None] = None,
                    model: str = "layers", input_size: tuple[int, int] = (0, 0)) -> SimResult:
    """Simulate an explicit layer list (a trace, or the layers of a SCALE-Sim topology CSV)."""
    cfg = resolve_config(config)
    return SimResult(model=model, input_size=input_size, config=cfg,
                     layers=[simulate_layer(layer, cfg) for layer in pe_layers(layers)],
                     zero_cycle_ops=zero_cycle_ops(layers))


def simulate(model: Union[str, nn.Module], input_size: Optional[InputSize] = None,
             config: Union[str, AcceleratorConfig, dict, None] = "default",
             overrides: Optional[dict] = None) -> SimResult:
    """Simulate ``model`` on an accelerator for one image of ``input_size``.

    ``model`` is an ``nn.Module`` or a name for :func:`squeezelab.models.resolve_model`: a zoo
    name or alias, a baseline or a torchvision classification name, with builder keywords
    (``"sqnxt23v5_w1:depths=[2,4,12,3]"``); ``overrides`` add keywords (``{"conv10_padding": 1}``).
    Named models default to their design input size, and their traces are cached.
    ``config`` is an :class:`AcceleratorConfig`, a preset name (see ``PRESETS``), a
    mapping or a ``.yaml``/``.json`` path.
    """
    if isinstance(model, str):
        traced = trace_model(model, input_size, **(overrides or {}))
        label, hw, layers = traced.spec.label, traced.input_size, traced.layers
    elif isinstance(model, nn.Module):
        if input_size is None:
            raise SqueezelabError("input_size is required for a user nn.Module, e.g. simulate(model, 224, 'default')")
        hw = input_hw(input_size)
        label, layers = type(model).__name__, trace(model, hw)
    else:
        raise SqueezelabError(f"model must be a model name or an nn.Module, not {type(model).__name__}")
    if not pe_layers(layers):
        raise SqueezelabError(f"{label} has no conv or linear layer to simulate")
    return simulate_layers(layers, config, model=label, input_size=hw)


@dataclass(frozen=True)
class Comparison:
    """``candidate`` against ``baseline``: speedup = baseline cycles / candidate cycles; same for energy."""

    baseline: SimResult
    candidate: SimResult

    @property
    def speedup(self) -> float:
        return self.baseline.cycles / self.candidate.cycles

    @property
    def energy_ratio(self) -> float:
        return self.baseline.energy / self.candidate.energy


def compare(baseline: Union[str, nn.Module, SimResult], candidate: Union[str, nn.Module, SimResult],
            input_size: Optional[InputSize] = None,
            config: Union[str, AcceleratorConfig, dict, None] = "default") -> Comparison:
    """How much faster and more energy-efficient ``candidate`` is than ``baseline`` on one accelerator."""
    a = baseline if isinstance(baseline, SimResult) else simulate(baseline, input_size, config)
    b = candidate if isinstance(candidate, SimResult) else simulate(candidate, input_size, config)
    return Comparison(a, b)

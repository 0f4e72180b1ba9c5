"""The SqueezeNext hardware study (paper §6): the networks, the paper's ratios, and the per-layer plot.

Networks at 227x227, as the Caffe prototxts (hwsim.md T1, T3): 1.0-SqNxt-23,
1.0-SqNxt-23v5, SqueezeNet v1.0 with Caffe's ``pad: 1`` on conv10, and
torchvision's AlexNet (single-tower, so without Caffe AlexNet's groups=2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence, Union

from ..plotting import colormap, new_figure
from .config import AcceleratorConfig
from .sim import SimResult, simulate

if TYPE_CHECKING:
    from matplotlib.figure import Figure

INPUT_SIZE = 227

#: label -> (model name, create_model overrides)
NETWORKS: dict[str, tuple[str, dict]] = {
    "1.0-SqNxt-23": ("sqnxt23_w1", {}),
    "1.0-SqNxt-23v5": ("sqnxt23v5_w1", {}),
    "SqueezeNet v1.0": ("squeezenet1_0", {"conv10_padding": 1}),
    "AlexNet": ("alexnet", {}),
}

#: arXiv 1803.10615v2 abstract (hwsim.md T1, S1): v5 vs SqueezeNet and vs AlexNet, (speedup, energy ratio).
PAPER_RATIOS: dict[str, tuple[float, float]] = {"SqueezeNet v1.0": (2.59, 2.25), "AlexNet": (8.26, 7.5)}

#: hwsim.md §3.7 item 8 bands [P]: (speedup low, high), (energy low, high); None is unbounded.
RATIO_BANDS: dict[str, tuple[tuple[float, Optional[float]], tuple[float, float]]] = {
    "SqueezeNet v1.0": ((2.0, 3.6), (1.8, 3.0)),
    "AlexNet": ((4.0, None), (5.0, 9.0)),
}


def simulate_network(label: str, config: Union[str, AcceleratorConfig] = "default") -> SimResult:
    name, overrides = NETWORKS[label]
    result = simulate(name, INPUT_SIZE, config, overrides=overrides)
    result.model = label
    return result


def in_band(value: float, band: tuple[float, Optional[float]]) -> bool:
    low, high = band
    return value >= low and (high is None or value <= high)


def headline_ratios(config: Union[str, AcceleratorConfig] = "default") -> list[dict]:
    """v5's speedup and energy ratio against SqueezeNet v1.0 and AlexNet, next to the paper's."""
    v5 = simulate_network("1.0-SqNxt-23v5", config)
    rows = []
    for label, (paper_speed, paper_energy) in PAPER_RATIOS.items():
        other = simulate_network(label, config)
        speed, energy = other.cycles / v5.cycles, other.energy / v5.energy
        speed_band, energy_band = RATIO_BANDS[label]
        rows.append(dict(baseline=label, speedup=speed, paper_speedup=paper_speed, energy_ratio=energy,
                         paper_energy_ratio=paper_energy, speedup_in_band=in_band(speed, speed_band),
                         energy_in_band=in_band(energy, energy_band), speedup_band=speed_band,
                         energy_band=energy_band))
    return rows


def plot_layers(results: Sequence[SimResult], time_unit: str = "cycles") -> Figure:
    """The paper's per-layer figure: time (cycles) and energy of every PE layer, one column per network.

    One filled step per layer, coloured by stage; energy is stacked by level (MAC, RF, NoC, GLB, DRAM, static).
    """
    levels = ("mac", "rf", "noc", "glb", "dram", "static")
    fig = new_figure(figsize=(6.5 * len(results), 7))
    from matplotlib.patches import Patch  # matplotlib is there: new_figure checked it
    axes = fig.subplots(2, len(results), squeeze=False, sharey="row")
    cmap = colormap("tab10")
    for col, result in enumerate(results):
        layers = result.layers
        edges = [i - 0.5 for i in range(len(layers) + 1)]
        stages = list(dict.fromkeys(r.stage for r in layers))
        top, bottom = axes[0][col], axes[1][col]
        for i, stage in enumerate(stages):  # one filled step artist per stage / level keeps plotting fast
            top.stairs([r.cycles if r.stage == stage else 0 for r in layers], edges, fill=True, color=cmap(i % 10))
        top.set_title(f"{result.model}: {result.cycles:,} cycles, util {result.utilization:.0%}", fontsize=9)
        top.set_ylabel(time_unit)
        base = [0.0] * len(layers)
        for i, level in enumerate(levels):
            values = [getattr(r, f"energy_{level}") for r in layers]
            if any(values):
                top_edge = [b + v for b, v in zip(base, values)]
                bottom.stairs(top_edge, edges, baseline=base, fill=True, color=colormap("Set2")(i), label=level)
                base = top_edge
        bottom.set_title(f"energy {result.energy:.3g} {result.energy_unit}", fontsize=9)
        bottom.set_ylabel(f"energy ({result.energy_unit})")
        bottom.set_xlabel("layer (execution order)")
        handles = [Patch(color=cmap(i % 10), label=stage) for i, stage in enumerate(stages)]
        top.legend(handles=handles, fontsize=7, loc="upper right", ncol=2, title="stage", title_fontsize=7)
        bottom.legend(fontsize=7, loc="upper right", title="energy level", title_fontsize=7)
    cfg = results[0].config
    fig.suptitle(f"Per-layer time and energy on {cfg.describe()}", fontsize=10)
    fig.tight_layout()
    return fig

"""Analytical accelerator simulator: SCALE-Sim-exact cycles, utilisation, memory traffic and energy.

SqueezeNext (Gholami et al., CVPR-W 2018, §6) was designed by simulating each
layer on a neural-network accelerator. This package reproduces that study with
the closed form of SCALE-Sim's systolic-array model (``shared/reference/hwsim.md``).
"""

from ..models.tracing import LayerSpec, trace
from .config import (DATAFLOWS, ENERGY_PRESETS, PRESETS, AcceleratorConfig, EnergyCosts, get_preset, load_config,
                     parse_array, resolve_config)
from .scalesim_io import layout_csv, read_topology, scalesim_config, topology_csv
from .sim import Comparison, LayerResult, SimResult, Totals, compare, simulate, simulate_layer, simulate_layers

__all__ = [
    "AcceleratorConfig", "Comparison", "DATAFLOWS", "ENERGY_PRESETS", "EnergyCosts", "LayerResult", "LayerSpec",
    "PRESETS", "SimResult", "Totals", "compare", "get_preset", "layout_csv", "load_config", "parse_array",
    "read_topology", "resolve_config", "scalesim_config", "simulate", "simulate_layer", "simulate_layers",
    "topology_csv", "trace",
]

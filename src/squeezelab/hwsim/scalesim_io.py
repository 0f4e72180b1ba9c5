"""SCALE-Sim topology CSV and config files, written from (and read into) the layer IR.

Formats per hwsim.md T5 and §2: topology rows ``name, IFMAP H, IFMAP W, filter H,
filter W, channels, num filters, stride,`` (trailing comma); a depthwise layer
is one row whose name contains ``DP`` (SCALE-Sim splits it per channel); other
grouped convs become one row per group. SCALE-Sim computes E = ceil((H - R + s)/s)
on the padded input, so the exported H, W are trimmed to (E - 1)s + R.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

from ..errors import SqueezelabError
from ..models.tracing import LayerSpec, pe_layers
from .config import AcceleratorConfig

HEADER = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,"


def _safe_name(name: str) -> str:
    """SCALE-Sim splits on commas and treats any name containing ``DP`` as depthwise."""
    return name.replace(",", "_").replace(" ", "_").replace("/", "_").replace("DP", "dp")


def topology_rows(layers: list[LayerSpec]) -> list[tuple]:
    """(name, H, W, R, S, C, M, stride) rows for SCALE-Sim, one per PE layer (per group for grouped convs)."""
    rows = []
    for layer in pe_layers(layers):
        if layer.stride_h != layer.stride_w:
            raise SqueezelabError(f"layer {layer.name}: SCALE-Sim has one stride, not {layer.stride_h}x{layer.stride_w}")
        s = layer.stride_h
        h = (layer.out_height - 1) * s + layer.kernel_h
        w = (layer.out_width - 1) * s + layer.kernel_w
        base = _safe_name(layer.name)
        if layer.groups == 1:
            rows.append((base, h, w, layer.kernel_h, layer.kernel_w, layer.channels, layer.filters, s))
        elif layer.kind == "dwconv":
            rows.append((f"DP_{base}", h, w, layer.kernel_h, layer.kernel_w, layer.channels, layer.Q, s))
        else:
            c = layer.channels // layer.groups
            rows += [(f"{base}_g{i}", h, w, layer.kernel_h, layer.kernel_w, c, layer.Q, s) for i in range(layer.groups)]
    return rows


def topology_csv(layers: list[LayerSpec]) -> str:
    return HEADER + "\n" + "".join(", ".join(str(v) for v in row) + ",\n" for row in topology_rows(layers))


def read_topology(path: Union[str, Path]) -> list[LayerSpec]:
    """Layers of a SCALE-Sim conv topology CSV (``DP`` rows become depthwise layers)."""
    path = Path(path)
    if not path.is_file():
        raise SqueezelabError(f"topology file {path} does not exist")
    layers = []
    for lineno, line in enumerate(path.read_text().splitlines()[1:], start=2):
        cells = [c.strip() for c in line.split(",") if c.strip()]
        if not cells:
            continue
        try:
            name, (h, w, r, s, c, m, stride) = cells[0], (int(v) for v in cells[1:8])
        except ValueError:
            raise SqueezelabError(f"{path}:{lineno}: expected name and 7 integers "
                                  "(H, W, R, S, C, M, stride)") from None
        if "DP" in name:
            layers.append(LayerSpec.conv(name, h, w, r, s, c, m * c, stride, groups=c))
        else:
            layers.append(LayerSpec.conv(name, h, w, r, s, c, m, stride))
    if not layers:
        raise SqueezelabError(f"{path} has no layer rows")
    return layers


def scalesim_config(config: AcceleratorConfig, run_name: str = "squeezelab") -> str:
    """A SCALE-Sim 3.0 ``.cfg`` for ``config``: the GLB split in three operand SRAMs, CALC bandwidth
    when unlimited (else USER at the configured words per cycle)."""
    if config.dataflow == "best":
        raise SqueezelabError("SCALE-Sim has no per-layer dataflow choice; export with --dataflow ws, os or is")
    sram_kb = max(1, config.glb_bytes // 3 // 1024)
    if config.dram_bw_bytes_per_cycle is None:
        mode, bandwidth = "CALC", 10
    else:
        mode, bandwidth = "USER", max(1, int(config.dram_bw_bytes_per_cycle // config.word_bytes))
    return f"""[general]
run_name = {run_name}

[architecture_presets]
ArrayHeight = {config.array_rows}
ArrayWidth = {config.array_cols}
IfmapSramSzkB = {sram_kb}
FilterSramSzkB = {sram_kb}
OfmapSramSzkB = {sram_kb}
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Dataflow = {config.dataflow}
Bandwidth = {bandwidth}
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
IfmapSRAMBankBandwidth = 10
IfmapSRAMBankNum = 10
IfmapSRAMBankPort = 2
FilterCustomLayout = False
FilterSRAMBankBandwidth = 10
FilterSRAMBankNum = 10
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40

[run_presets]
InterfaceBandwidth = {mode}
UseRamulatorTrace = False
"""


def layout_csv(layers: list[LayerSpec]) -> str:
    """The per-layer layout file SCALE-Sim 3.0 requires (its values are unused without custom layouts)."""
    names = [row[0] for row in topology_rows(layers)]
    return "Layer name," + "x," * 24 + "\n" + "".join(f"{n}," + "1," * 24 + "\n" for n in names)

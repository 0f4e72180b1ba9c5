"""Regenerate ``scalesim_goldens.csv``: SCALE-Sim 3.0.0 run on the golden layers of hwsim.md T7.

SCALE-Sim needs numpy < 2.3, so it runs in a throwaway venv, not the project's::

    python3 -m venv /tmp/scalesim-venv
    /tmp/scalesim-venv/bin/pip install scalesim==3.0.0 'numpy<2.3'
    /tmp/scalesim-venv/bin/python tests/data/hwsim/make_goldens.py

Every (array, dataflow) pair is one SCALE-Sim run over all layers, with
``InterfaceBandwidth: CALC`` (no stalls) and 64 kB SRAMs per operand. The CSV
keeps SCALE-Sim's own numbers, unchanged, one row per SCALE-Sim layer (a
``DP`` row becomes one row per channel, as SCALE-Sim splits it).
"""

from __future__ import annotations

import csv
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: name, (IFMAP H, IFMAP W, filter H, filter W, channels, num filters, stride); H, W are padded sizes.
LAYERS = [
    ("small1x1", (4, 4, 1, 1, 8, 8, 1)),
    ("big1x1", (32, 32, 1, 1, 16, 16, 1)),
    ("conv3x3", (16, 16, 3, 3, 16, 32, 1)),
    ("sep3x1", (18, 16, 3, 1, 16, 16, 1)),
    ("sep1x3", (16, 18, 1, 3, 16, 16, 1)),
    ("stride2", (17, 17, 3, 3, 8, 16, 2)),
    ("DPdw3x3", (16, 16, 3, 3, 8, 1, 1)),
    ("fc", (1, 1, 1, 1, 128, 1000, 1)),
]
ARRAYS = [(8, 8), (16, 16), (8, 16)]
DATAFLOWS = ["ws", "os", "is"]

CONFIG = """[general]
run_name = {run}

[architecture_presets]
ArrayHeight = {rows}
ArrayWidth = {cols}
IfmapSramSzkB = 64
FilterSramSzkB = 64
OfmapSramSzkB = 64
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Dataflow = {df}
Bandwidth = 10
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
InterfaceBandwidth = CALC
UseRamulatorTrace = False
"""

FIELDS = ["layer", "H", "W", "R", "S", "C", "M", "stride", "array_rows", "array_cols", "dataflow",
          "total_cycles", "stall_cycles", "overall_util", "mapping_eff", "compute_util",
          "ifmap_sram_reads", "filter_sram_reads", "ofmap_sram_writes",
          "ifmap_dram_reads", "filter_dram_reads", "ofmap_dram_writes"]


def run(rows: int, cols: int, df: str, work: Path) -> list[dict]:
    from scalesim.scale_sim import scalesim

    run_name = f"golden_{rows}x{cols}_{df}"
    topo, layout, cfg = work / "topo.csv", work / "layout.csv", work / f"{run_name}.cfg"
    topo.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
                    + "".join(f"{name}, {', '.join(map(str, dims))},\n" for name, dims in LAYERS))
    layout.write_text("Layer name," + "x," * 24 + "\n"
                      + "".join(f"{name}," + "1," * 24 + "\n" for name, _ in LAYERS))
    cfg.write_text(CONFIG.format(run=run_name, rows=rows, cols=cols, df=df))
    sim = scalesim(save_disk_space=True, verbose=False, config=str(cfg), topology=str(topo),
                   layout=str(layout), input_type_gemm=False)
    sim.run_scale(top_path=str(work))
    out = work / run_name
    with open(out / "COMPUTE_REPORT.csv") as f:
        compute = [[c.strip() for c in r] for r in csv.reader(f)][1:]
    with open(out / "DETAILED_ACCESS_REPORT.csv") as f:
        access = [[c.strip() for c in r] for r in csv.reader(f)][1:]
    dims = dict(LAYERS)
    records = []
    names = [n for n, d in LAYERS for _ in range(d[4] if n.startswith("DP") else 1)]
    for name, comp, acc in zip(names, compute, access):
        h, w, r, s, c, m, st = dims[name]
        records.append(dict(
            layer=name, H=h, W=w, R=r, S=s, C=c, M=m, stride=st, array_rows=rows, array_cols=cols, dataflow=df,
            total_cycles=int(comp[2]), stall_cycles=int(comp[3]), overall_util=float(comp[4]),
            mapping_eff=float(comp[5]), compute_util=float(comp[6]),
            ifmap_sram_reads=int(acc[3]), filter_sram_reads=int(acc[6]), ofmap_sram_writes=int(acc[9]),
            ifmap_dram_reads=int(acc[12]), filter_dram_reads=int(acc[15]), ofmap_dram_writes=int(acc[18]),
        ))
    return records


def main(out_path: Path = HERE / "scalesim_goldens.csv") -> int:
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for rows, cols in ARRAYS:
            for df in DATAFLOWS:
                work = Path(tmp) / f"{rows}x{cols}_{df}"
                work.mkdir()
                records += run(rows, cols, df, work)
                print(f"{rows}x{cols} {df}: {len(records)} rows", file=sys.stderr)
    with open(out_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(records)
    return 0


if __name__ == "__main__":
    sys.exit(main())

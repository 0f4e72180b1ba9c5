"""Simulated rows for ``squeezelab claims``: SqueezeNext §6 and its abstract (hwsim.md T1, §3.7)."""

from __future__ import annotations

from ..analysis.claims import ClaimContext, ClaimRow, claim
from .config import AcceleratorConfig
from .study import PAPER_RATIOS, headline_ratios, plot_layers, simulate_network

SECTION = "SqueezeNext hardware simulation (§6)"
ARRAYS = (8, 16, 32)


@claim(SECTION)
def v5_faster_and_cheaper_than_v1() -> list[ClaimRow]:
    """v5 takes fewer cycles and less energy than v1 on 8x8, 16x16 and 32x32 arrays under WS and OS."""
    rows = []
    for dataflow in ("ws", "os"):
        speed, energy = [], []
        for a in ARRAYS:
            cfg = AcceleratorConfig(array_rows=a, array_cols=a, dataflow=dataflow)
            v1, v5 = simulate_network("1.0-SqNxt-23", cfg), simulate_network("1.0-SqNxt-23v5", cfg)
            speed.append(v1.cycles / v5.cycles)
            energy.append(v1.energy / v5.energy)
        measured = ", ".join(f"{a}x{a}: {s:.2f}x / {e:.2f}x" for a, s, e in zip(ARRAYS, speed, energy))
        rows.append(ClaimRow(
            f"1.0-SqNxt-23v5 is faster and uses less energy than 1.0-SqNxt-23 ({dataflow.upper()})",
            paper="v5 faster and more efficient", measured=f"speedup / energy gain {measured}",
            holds=min(speed) > 1 and min(energy) > 1,
            note="227x227, eyeriss_isca16_norm costs; the paper's array sizes and dataflow are not verified"))
    return rows


@claim(SECTION)
def early_stage_underuses_array(*, ctx: ClaimContext) -> ClaimRow:
    """The low-channel first stage of v1 uses a 32x32 WS array worse than stage 3 (the per-layer figure)."""
    cfg = AcceleratorConfig(array_rows=32, array_cols=32, dataflow="ws")
    v1, v5 = simulate_network("1.0-SqNxt-23", cfg), simulate_network("1.0-SqNxt-23v5", cfg)
    s1, s3 = v1.stage("stage1").utilization, v1.stage("stage3").utilization
    link = ctx.save_figure(plot_layers([v1, v5]), "hwsim_sqnxt23_v1_v5_layers.png") if ctx.draws else None
    return ClaimRow("1.0-SqNxt-23's early low-channel stage has lower utilisation than stage 3",
                    paper="qualitative (per-layer figure)", measured=f"stage1 {s1:.1%}, stage3 {s3:.1%} (32x32 WS)",
                    holds=s1 < s3, note="utilisation = MACs / (PEs x cycles) per stage"
                    + ("; per-layer time/energy figure: hwsim_sqnxt23_v1_v5_layers.png" if link else ""))


@claim(SECTION)
def headline_ratios_default() -> list[ClaimRow]:
    """v5 vs SqueezeNet v1.0 and vs AlexNet, speed and energy, on the default preset and the Squeezelerator-like one."""
    rows = []
    for preset in ("default", "squeezelerator"):
        for r in headline_ratios(preset):
            paper_speed, paper_energy = PAPER_RATIOS[r["baseline"]]
            for what, value, paper, ok, band in (
                    ("faster", r["speedup"], paper_speed, r["speedup_in_band"], r["speedup_band"]),
                    ("more energy-efficient", r["energy_ratio"], paper_energy, r["energy_in_band"], r["energy_band"])):
                high = "inf" if band[1] is None else f"{band[1]:g}"
                rows.append(ClaimRow(
                    f"1.0-SqNxt-23v5 is {paper:g}x {what} than {r['baseline']}", paper=f"{paper:g}x",
                    measured=f"{value:.2f}x ({preset})", holds=ok,
                    note=f"holds = within hwsim.md §3.7 band [{band[0]:g}, {high}]; 227x227; "
                         + ("torchvision's single-tower AlexNet" if r["baseline"] == "AlexNet"
                            else "Caffe v1.0 (conv10 pad 1)")))
    return rows

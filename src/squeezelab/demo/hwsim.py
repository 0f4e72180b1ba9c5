"""Demo stage: SqueezeNet v1.0, 1.0-SqNxt-23 and 1.0-SqNxt-23v5 on the default accelerator (paper §6)."""

from __future__ import annotations

from ..tables import format_table
from ..hwsim.config import PRESETS
from ..hwsim.study import plot_layers, simulate_network
from .report import DemoContext

NETWORKS = ("SqueezeNet v1.0", "1.0-SqNxt-23", "1.0-SqNxt-23v5")


def stage(ctx: DemoContext) -> None:
    """Simulate the three networks at 227x227 on the ``default`` preset; per-layer time/energy plot."""
    results = [simulate_network(label, "default") for label in NETWORKS]
    v5 = results[-1]
    unit = v5.energy_unit
    rows = [[r.model, r.macs, len(r.layers), r.cycles, f"{r.utilization:.1%}", f"{r.energy:.4g}",
             round(r.energy / r.macs, 2), f"{r.cycles / v5.cycles:.2f}x", f"{r.energy / v5.energy:.2f}x"]
            for r in results]
    table = format_table(["network", "MACs", "PE layers", "cycles", "util", f"energy ({unit})", f"{unit}/MAC",
                          "v5 speedup", "v5 energy gain"], rows, markdown=True)
    v1 = results[1]
    stage_rows = [[s.name, s.layers, s.macs, s.cycles, f"{s.utilization:.1%}"] for s in v1.stages()]
    stages = format_table(["1.0-SqNxt-23 stage", "layers", "MACs", "cycles", "util"], stage_rows, markdown=True)
    link = ctx.report.save_figure(plot_layers(results), "hwsim_layers.png")
    ctx.artifacts["hwsim"] = {r.model: r for r in results}
    ctx.report.add(
        "Hardware simulation (SqueezeNext §6)",
        f"Analytical SCALE-Sim-exact simulation at 227x227 on the `default` preset: {PRESETS['default'].describe()}. "
        f"Reproduce with `squeezelab simulate --compare squeezenet1_0:conv10_padding=1 sqnxt23v5_w1 --input-size 227`."
        f"\n\n{table}\n\n{stages}\n\n{link}")

"""Simulation time for the whole zoo at each model's design input size.

Columns: building the model (``create_model``, the zoo's cost), tracing its layers
(``squeezelab.models.trace`` of the built model), the first ``simulate()`` call by name (trace + simulate;
SqueezeNext is traced from its parts without being built, the others are built; traces are then cached
per name and input size), a warm ``simulate()`` (median; what each point of a design sweep costs) and a
sweep over 3 arrays x 4 dataflows. ``benchmarks/trace_simulate.py`` times one SqueezeNext variant in detail.

    .venv/bin/python benchmarks/simulate_zoo.py [--out benchmarks/results/simulate_zoo.json] [--repeat 5]

Prints a table and writes JSON. """

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch

from squeezelab.hwsim import AcceleratorConfig, simulate, trace
from squeezelab.io import atomic_write_text
from squeezelab.models import create_model, get_model_entry, list_models
from squeezelab.tables import format_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/simulate_zoo.json")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--models", default="", help="comma-separated subset (default: the whole zoo)")
    args = parser.parse_args(argv)
    names = [n for n in args.models.split(",") if n] or list_models()
    sweep = [AcceleratorConfig(array_rows=a, array_cols=a, dataflow=df) for a in (8, 16, 32)
             for df in ("ws", "os", "is", "best")]
    rows, records = [], []
    for name in names:
        size = get_model_entry(name).input_size
        start = time.perf_counter()
        model = create_model(name)
        build = time.perf_counter() - start
        start = time.perf_counter()
        trace(model, size)
        trace_s = time.perf_counter() - start
        del model
        start = time.perf_counter()
        simulate(name, size, "default")
        cold = time.perf_counter() - start
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            result = simulate(name, size, "default")
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        for cfg in sweep:
            simulate(name, size, cfg)
        sweep_s = time.perf_counter() - start
        sim = statistics.median(times)
        rows.append([name, size, len(result.layers), result.macs, f"{build * 1e3:.0f}", f"{trace_s * 1e3:.0f}",
                     f"{cold * 1e3:.0f}", f"{sim * 1e3:.2f}", f"{sweep_s * 1e3:.1f}"])
        records.append(dict(model=name, input_size=size, pe_layers=len(result.layers), macs=result.macs,
                            build_s=build, trace_s=trace_s, first_simulate_s=cold, simulate_s=sim,
                            sweep_12_configs_s=sweep_s, cycles_default=result.cycles))
    headers = ["model", "input", "PE layers", "MACs", "build ms", "trace ms", "first sim ms", "warm sim ms",
               "sweep(12) ms"]
    print(format_table(headers, rows))
    env = dict(python=platform.python_version(), torch=torch.__version__, machine=platform.machine(),
               threads=torch.get_num_threads())
    atomic_write_text(args.out, json.dumps(dict(env=env, results=records), indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

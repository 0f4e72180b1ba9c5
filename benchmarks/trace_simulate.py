"""Trace + simulate one SqueezeNext variant: what each design point of a hardware-aware search costs.

The model (default 1.0-SqNxt-23v5 at 227 px) on the Squeezelerator preset (32x32 PEs, the best dataflow
per layer, the paper's §6 accelerator). Rows:

- ``build``: ``create_model`` (the zoo's cost, for reference);
- ``trace(built model)``: :func:`squeezelab.models.trace` on it (one hooked run on a batch of 0 images);
- ``cold simulate``: ``simulate()`` of the model with every cache empty (parts built and traced);
- ``new variant``: ``simulate()`` of a new depth split of the 21 blocks each time (d1 + d2 + d3 + d4 = 21,
  the exact sub-space of issue 31), parts and layer results warm: the search's steady state;
- ``new accelerator``: a traced variant on a new array size (layer results computed, trace cached);
- ``repeat``: the same variant and accelerator again (every cache warm).

Each row gives the median and the best of ``--repeat`` runs, wall clock and this process's CPU time
(the CPU time shows less of what other processes on a busy machine add), and the CPU time other
processes used meanwhile (``other cores``).

    nice -n 10 .venv/bin/python benchmarks/trace_simulate.py [--model sqnxt23v5_w1] [--repeat 30]

Prints a table and writes ``benchmarks/results/trace_simulate.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from typing import Any, Callable

from squeezelab.export.timing import OtherLoad, machine_info
from squeezelab.hwsim import get_preset, simulate
from squeezelab.hwsim import sim as hwsim_sim
from squeezelab.io import atomic_write_text
from squeezelab.models import create_model, trace, tracing
from squeezelab.tables import format_table

TARGET_MS = 20.0


def _clear_caches() -> None:
    tracing._PART_CACHE.clear()
    tracing._cached_trace.cache_clear()
    hwsim_sim._cached_result.cache_clear()


def _time(run: Callable[[], Any], repeat: int, before: Callable[[], None] = lambda: None) -> dict[str, float]:
    walls, cpus = [], []
    with OtherLoad() as other:
        for _ in range(repeat):
            before()
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    ms = {f"{kind}_{stat}_ms": 1e3 * fn(values) for kind, values in (("wall", walls), ("cpu", cpus))
          for stat, fn in (("median", statistics.median), ("best", min))}
    return {**ms, "other_cores": other.cores}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sqnxt23v5_w1")
    parser.add_argument("--input-size", type=int, default=227)
    parser.add_argument("--config", default="squeezelerator")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--out", default="benchmarks/results/trace_simulate.json")
    args = parser.parse_args(argv)
    config, size = get_preset(args.config), args.input_size
    splits = itertools.cycle([d for d in itertools.product(range(1, 19), repeat=4) if sum(d) == 21])
    arrays = itertools.cycle(range(8, 65))
    built = create_model(args.model)

    rows = {
        "build": _time(lambda: create_model(args.model), args.repeat),
        "trace(built model)": _time(lambda: trace(built, size), args.repeat),
        "cold simulate": _time(lambda: simulate(args.model, size, config), args.repeat, before=_clear_caches),
        "new variant": _time(lambda: simulate(args.model, size, config, overrides={"depths": next(splits)}),
                             args.repeat),
        "new accelerator": _time(lambda: simulate(args.model, size, config.replace(
            array_rows=(side := next(arrays)), array_cols=side)), args.repeat),
        "repeat": _time(lambda: simulate(args.model, size, config), args.repeat),
    }
    result = simulate(args.model, size, config)
    print(f"{result.model} @ {size}x{size} on {config.describe()}: {len(result.layers)} PE layers, "
          f"{result.cycles:,} cycles")
    headers = ["step", "wall median ms", "wall best ms", "CPU median ms", "CPU best ms", "other cores"]
    print(format_table(headers, [[step, *(round(r[k], 2) for k in ("wall_median_ms", "wall_best_ms",
                                                                   "cpu_median_ms", "cpu_best_ms")),
                                  "" if r["other_cores"] is None else round(r["other_cores"], 2)]
                                 for step, r in rows.items()]))
    variant = rows["new variant"]["wall_median_ms"]
    verdict = "met" if variant < TARGET_MS else "MISSED"
    print(f"new variant: {variant:.1f} ms median (target < {TARGET_MS:g} ms: {verdict})")
    record = dict(model=args.model, input_size=size, config=config.to_dict(), repeat=args.repeat,
                  pe_layers=len(result.layers), cycles=result.cycles, target_ms=TARGET_MS, steps=rows,
                  machine=machine_info())
    atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Issue 8's inference matrix: every backend, batch 1 and 32, 224x224, on this machine's CPU.

Prints the table, checks the issue's goals and writes JSON (machine, load average
before/after, threads, sgemm roofline, every row). Run it on a quiet machine:

    .venv/bin/python benchmarks/inference.py                 # full: 4 models, 40 rounds, ~5 min
    .venv/bin/python benchmarks/inference.py --quick         # squeezenet1_0/1_1, 10 rounds, ~1 min
    .venv/bin/python benchmarks/inference.py --compile       # also torch.compile (minutes to compile)

Goals (issue 8): the best path at batch 1 at least as fast as ONNX Runtime and >= 2.3x
(squeezenet1_0) / 3x (squeezenet1_1) faster than torchvision eager; at batch 32 >= 70% of
the sgemm GFLOP/s for squeezenet1_0. SqueezeNext is reported against the zoo's eager model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from squeezelab.deploy.bench import BENCH_HEADERS, DEFAULT_BACKENDS, bench_model, bench_table_rows
from squeezelab.export.timing import OtherLoad, machine_info, sgemm_gflops
from squeezelab.io import atomic_write_text
from squeezelab.models import create_model
from squeezelab.tables import format_table

FULL_MODELS = ("squeezenet1_0", "squeezenet1_1", "sqnxt23_w1", "sqnxt23v5_w1")
QUICK_MODELS = ("squeezenet1_0", "squeezenet1_1")
SPEEDUP_GOALS = {"squeezenet1_0": 2.3, "squeezenet1_1": 3.0}
ROOFLINE_GOAL = ("squeezenet1_0", 32, 0.70)


def goal_lines(rows) -> list[str]:
    """One PASS/FAIL line per goal of issue 8 that these rows can decide."""
    lines = []
    for (name, batch) in sorted({(r.model, r.batch) for r in rows}):
        group = {r.backend: r for r in rows if (r.model, r.batch) == (name, batch)}
        best = min((r for r in group.values() if r.backend != r.reference), key=lambda r: r.median_ms, default=None)
        if best is None:
            continue
        if batch == 1 and "onnxruntime" in group:
            torch_paths = [r for b, r in group.items() if b in ("eager", "compile")]
            ort = group["onnxruntime"]
            note = ""
            if torch_paths:
                fastest_torch = min(torch_paths, key=lambda r: r.median_ms)
                ratio = ort.median_ms / fastest_torch.median_ms
                note = f"; fastest torch path {fastest_torch.backend}: {ratio:.2f}x the speed of ORT"
            lines.append(f"{'PASS' if best.median_ms <= ort.median_ms else 'FAIL'} {name} b1: best "
                         f"{best.backend} {best.median_ms:.2f} ms vs onnxruntime {ort.median_ms:.2f} ms{note}")
        if batch == 1 and name in SPEEDUP_GOALS:
            goal = SPEEDUP_GOALS[name]
            lines.append(f"{'PASS' if best.speedup_vs_reference >= goal else 'FAIL'} {name} b1: best "
                         f"{best.backend} {best.speedup_vs_reference:.2f}x vs {best.reference} (goal {goal}x)")
        if (name, batch) == ROOFLINE_GOAL[:2]:
            goal = ROOFLINE_GOAL[2]
            lines.append(f"{'PASS' if best.roofline_fraction >= goal else 'FAIL'} {name} b{batch}: best "
                         f"{best.backend} {100 * best.roofline_fraction:.0f}% of sgemm (goal {100 * goal:.0f}%)")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="squeezenet1_0/1_1 only, 10 rounds")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to build)")
    parser.add_argument("--models", nargs="+", help="override the model list")
    parser.add_argument("--batch", default="1,32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, help="timed calls per configuration (default 40, --quick 12)")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--json", default="benchmarks/results/inference.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = args.models or (QUICK_MODELS if args.quick else FULL_MODELS)
    reps = args.reps or (12 if args.quick else 40)
    backends = [*DEFAULT_BACKENDS, *(["compile"] if args.compile else [])]
    batches = [int(b) for b in args.batch.split(",")]
    info = machine_info()
    sgemm = sgemm_gflops(args.threads)
    print(f"machine: {info['cpu']}, {info['cpu_count']} cores ({info['capability']}), threads {args.threads}, "
          f"load average {info['load_average']}; sgemm {sgemm:.1f} GFLOP/s; torch {info['torch']}, "
          f"onnxruntime {info['onnxruntime']}", flush=True)
    start = time.perf_counter()
    rows = []
    with OtherLoad() as other:
        for name in models:
            model = create_model(name).eval()
            for batch in batches:
                rows.extend(bench_model(model, batch, backends, input_size=args.input_size, threads=args.threads,
                                        reps=reps, max_seconds=60.0 if batch > 1 else 20.0, sgemm=sgemm))
                print(f"  {name} batch {batch} done ({time.perf_counter() - start:.0f}s)", file=sys.stderr,
                      flush=True)
    after = machine_info()
    print(format_table(BENCH_HEADERS, bench_table_rows(rows)))
    other_text = "unknown" if other.cores is None else f"{other.cores:.2f} cores"
    print(f"other processes' CPU use during the run: {other_text}; load average after: {after['load_average']} "
          "(includes this run's threads); * = fastest non-reference backend")
    goals = goal_lines(rows)
    busy = (other.cores if other.cores is not None else after["load_average"][0]) > 0.25 * (info["cpu_count"] or 1)
    if busy:
        goals.append("WARNING: other processes used more than a quarter of the cores during the run: they slow "
                     "torch's OpenMP threads and the sgemm roofline; rerun on a quiet machine before reading these")
    print("\n".join(goals))
    record = {"command": " ".join(["benchmarks/inference.py", *(argv if argv is not None else sys.argv[1:])]),
              "machine": info, "load_average_after": after["load_average"], "other_process_cores": other.cores,
              "threads": args.threads, "sgemm_gflops": sgemm, "quiet": not busy, "input_size": args.input_size,
              "reps": reps, "goals": goals,
              "seconds": time.perf_counter() - start, "rows": [r.as_dict() for r in rows]}
    atomic_write_text(Path(args.json), json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

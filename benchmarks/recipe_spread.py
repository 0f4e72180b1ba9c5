"""The spread of short training runs over seeds and CPU kernel sets: where the tests' accuracy thresholds come from.

Each run is ``squeezelab.train.train`` with the default recipe on scikit-learn's
digits (the protocol of ``tests/test_train.py``), in a fresh subprocess whose
environment selects PyTorch's kernels the way another machine would:

* ``native``: whatever this CPU offers (AVX-512 with VNNI/BF16 on some machines);
* ``avx2``: ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``;
* ``sse41``: ``ONEDNN_MAX_CPU_ISA=SSE41`` (other convolution kernels);
* ``aten-default``: ``ATEN_CPU_CAPABILITY=default`` (other elementwise kernels).

Prints min / mean / max best-val top-1 and the worst epoch-1 validation loss per
model and kernel set, and writes every run to JSON::

    .venv/bin/python benchmarks/recipe_spread.py [--seeds 0 1 2 3 4] [--jobs 2] [--models squeezenet1_1 sqnxt23_w1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from squeezelab.export.timing import OtherLoad, machine_info
from squeezelab.io import atomic_write_text
from squeezelab.tables import format_table

KERNEL_SETS: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
    "sse41": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
    "aten-default": {"ATEN_CPU_CAPABILITY": "default"},
}

#: The protocol of tests/test_train.py's accuracy tests: digits at 8 px, 6 epochs, one thread.
PROTOCOL = {"data": "digits", "input_size": 8, "epochs": 6, "threads": 1}

_RUN = """
import json, sys, tempfile
from squeezelab.train import TrainConfig, train
model, seed, protocol = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
with tempfile.TemporaryDirectory() as tmp:
    result = train(TrainConfig(model, seed=seed, progress=False, output=tmp + "/run", **protocol))
print(json.dumps({"best_top1": result.best_top1, "epoch1_val_loss": result.history[0]["val_loss"],
                  "val_top1": [row["val_top1"] for row in result.history], "seconds": result.seconds}))
"""


def run_one(model: str, seed: int, kernel_set: str, protocol: dict) -> dict:
    """One training run in a subprocess with ``kernel_set``'s environment."""
    env = {**os.environ, **KERNEL_SETS[kernel_set]}
    done = subprocess.run([sys.executable, "-c", _RUN, model, str(seed), json.dumps(protocol)], env=env,
                          capture_output=True, text=True, check=True)
    record = json.loads(done.stdout.strip().splitlines()[-1])
    return {"model": model, "seed": seed, "kernel_set": kernel_set, **record}


def summarise(records: list[dict]) -> list[list[str]]:
    rows = []
    for model in dict.fromkeys(r["model"] for r in records):
        for kernel_set in dict.fromkeys(r["kernel_set"] for r in records):
            runs = [r for r in records if r["model"] == model and r["kernel_set"] == kernel_set]
            if not runs:
                continue
            top1 = [r["best_top1"] for r in runs]
            rows.append([model, kernel_set, str(len(runs)), f"{min(top1):.1f}", f"{statistics.mean(top1):.1f}",
                         f"{max(top1):.1f}", f"{max(r['epoch1_val_loss'] for r in runs):.3g}"])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["squeezenet1_1", "sqnxt23_w1"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--kernel-sets", nargs="+", choices=sorted(KERNEL_SETS), default=list(KERNEL_SETS))
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (each uses one thread)")
    parser.add_argument("--json", default="benchmarks/results/recipe_spread.json")
    args = parser.parse_args()
    jobs = [(m, s, k) for s in args.seeds for m in args.models for k in args.kernel_sets]
    start = time.perf_counter()
    records: list[dict] = []
    with OtherLoad() as other, ThreadPoolExecutor(args.jobs) as pool:
        for done in as_completed([pool.submit(run_one, *job, PROTOCOL) for job in jobs]):
            records.append(done.result())
            print(json.dumps(records[-1]), flush=True)
            _write(args.json, records, start, None)  # every finished run is kept if the sweep is stopped
    _write(args.json, records, start, other.cores)
    print(format_table(["model", "kernels", "runs", "min top-1", "mean", "max", "worst epoch-1 val loss"],
                       summarise(records)))
    print(f"wrote {args.json}")
    return 0


def _write(path: str, records: list[dict], start: float, other_cores: float | None) -> None:
    result = {"protocol": PROTOCOL, "kernel_sets": KERNEL_SETS, "machine": machine_info(),
              "other_process_cores": other_cores, "wall_seconds": time.perf_counter() - start, "runs": records}
    atomic_write_text(path, json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())

"""The spread of short training runs over seeds and CPU kernel sets: where the tests' accuracy thresholds come from.

Each run is ``squeezelab.train.train`` with the default recipe on scikit-learn's
digits (the protocol of ``tests/test_train.py``), in a fresh subprocess whose
environment selects PyTorch's kernels the way another machine would:

* ``native``: whatever this CPU offers (AVX-512 with VNNI/BF16 on some machines);
* ``avx2``: ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``;
* ``sse41``: ``ONEDNN_MAX_CPU_ISA=SSE41`` (other convolution kernels);
* ``aten-default``: ``ATEN_CPU_CAPABILITY=default`` (other elementwise kernels).

Three protocols: ``digits`` (the tests' thresholds), ``digits-15`` (the same for 15 epochs,
where both models have converged and the spread between kernel sets is narrower) and
``fashion-mnist`` (issue 15's small-data target: 5,000 training images, 1,000 test images,
28 px, 5 epochs).
``--set KEY=VALUE`` overrides a ``TrainConfig`` field (``model.KEY`` a model
argument) to measure a recipe change on every seed and kernel set. Besides the zoo,
``--models`` takes the two plain small CNNs of ``benchmarks/plain_cnns.py``, the
yardstick of issue 15's small-data target.

Prints min / mean / max best-val top-1 and the worst epoch-1 validation loss per
model and kernel set, and writes every run to JSON::

    .venv/bin/python benchmarks/recipe_spread.py [--seeds 0 1 2 3 4] [--jobs 2] [--models squeezenet1_1 sqnxt23_w1]
    .venv/bin/python benchmarks/recipe_spread.py --protocol fashion-mnist --kernel-sets native \
        [--set batch_size=32 augment=false] --json benchmarks/results/fashion_mnist_spread.json
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
from squeezelab.models import parse_value
from squeezelab.tables import format_table

KERNEL_SETS: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
    "sse41": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
    "aten-default": {"ATEN_CPU_CAPABILITY": "default"},
}

#: The protocol of tests/test_train.py's accuracy tests (digits at 8 px, 6 epochs, one thread), and issue 15's
#: small-data protocol (Fashion-MNIST, 5,000 training / 1,000 test images, 28 px, 5 epochs); ``digits-15``
#: trains the digits protocol to convergence, a candidate for a tighter portability test.
PROTOCOLS: dict[str, dict] = {
    "digits": {"data": "digits", "input_size": 8, "epochs": 6, "threads": 1},
    "digits-15": {"data": "digits", "input_size": 8, "epochs": 15, "threads": 1},
    "fashion-mnist": {"data": "fashion-mnist", "input_size": 28, "epochs": 5, "train_limit": 5000,
                      "val_limit": 1000, "threads": 1},
}

#: This folder, put on the training subprocesses' path so they can register ``plain_cnns``.
_BENCHMARKS_DIR = os.path.dirname(os.path.abspath(__file__))

_RUN = """
import json, sys, tempfile
from squeezelab.train import TrainConfig, train
model, seed, settings = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
sys.path.insert(0, sys.argv[4])
import plain_cnns
plain_cnns.register()
with tempfile.TemporaryDirectory() as tmp:
    result = train(TrainConfig(model, seed=seed, progress=False, output=tmp + "/run", **settings))
print(json.dumps({"best_top1": result.best_top1, "epoch1_val_loss": result.history[0]["val_loss"],
                  "val_top1": [row["val_top1"] for row in result.history], "seconds": result.seconds}))
"""


def parse_settings(pairs: list[str]) -> dict:
    """``KEY=VALUE`` pairs -> TrainConfig overrides; VALUE is JSON (``32``, ``false``) or a plain string,
    and ``model.KEY`` goes to ``model_kwargs``."""
    settings: dict = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set takes KEY=VALUE, got {pair!r}")
        value = parse_value(text)
        if key.startswith("model."):
            settings.setdefault("model_kwargs", {})[key.removeprefix("model.")] = value
        else:
            settings[key] = value
    return settings


def run_one(model: str, seed: int, kernel_set: str, settings: dict) -> dict:
    """One training run in a subprocess with ``kernel_set``'s environment."""
    env = {**os.environ, **KERNEL_SETS[kernel_set]}
    command = [sys.executable, "-c", _RUN, model, str(seed), json.dumps(settings), _BENCHMARKS_DIR]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
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
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="digits")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="TrainConfig overrides, e.g. batch_size=32 augment=false model.dropout=0")
    parser.add_argument("--json", help="default benchmarks/results/recipe_spread.json (digits) or "
                                        "fashion_mnist_spread.json")
    args = parser.parse_args()
    if args.json is None:
        name = "recipe_spread" if args.protocol == "digits" else "fashion_mnist_spread"
        args.json = f"benchmarks/results/{name}.json"
    overrides = parse_settings(args.set)
    settings = {**PROTOCOLS[args.protocol], **overrides}
    jobs = [(m, s, k) for s in args.seeds for m in args.models for k in args.kernel_sets]
    start = time.perf_counter()
    records: list[dict] = []
    with OtherLoad() as other, ThreadPoolExecutor(args.jobs) as pool:
        for done in as_completed([pool.submit(run_one, *job, settings) for job in jobs]):
            records.append(done.result())
            print(json.dumps(records[-1]), flush=True)
            _write(args.json, settings, overrides, records, start, None)  # every finished run is kept if stopped
    _write(args.json, settings, overrides, records, start, other.cores)
    print(format_table(["model", "kernels", "runs", "min top-1", "mean", "max", "worst epoch-1 val loss"],
                       summarise(records)))
    print(f"wrote {args.json}")
    return 0


def _write(path: str, settings: dict, overrides: dict, records: list[dict], start: float,
           other_cores: float | None) -> None:
    result = {"protocol": settings, "overrides": overrides, "kernel_sets": KERNEL_SETS, "machine": machine_info(),
              "other_process_cores": other_cores, "wall_seconds": time.perf_counter() - start, "runs": records}
    atomic_write_text(path, json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())

"""The fast recipe, lever by lever: a cumulative ladder of training options on a short CIFAR-10 protocol.

Each rung adds one lever to the one before (``LADDERS``), for each model and seed; every run is
``squeezelab train`` in its own process (one thread by default, so two runs can share a 2-core
machine), on a fixed 10,000-image subset of the CIFAR-10 training zip (``--data-seed 0``) for
``--epochs`` epochs, scored on all 10,000 test images after the last epoch. Test-time
augmentation (``squeezelab eval --tta flip|flip-translate``) is scored on the rungs named by
``--tta-rungs``. Records go to the JSON after every run, so a stopped job continues where it
stopped (finished runs are skipped, an interrupted one resumes with ``--resume``).

    .venv/bin/python benchmarks/fast_recipe_levers.py --data ../shared/data [--models M ...] [--seeds 0 1]
        [--epochs 10] [--jobs 1] [--json benchmarks/results/fast_recipe_levers.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from squeezelab.export.timing import OtherLoad, machine_info
from squeezelab.io import atomic_write_text
from squeezelab.tables import format_table

#: Per model: (rung, the flags it adds to the rung before). Rung 0 is today's default recipe.
LADDERS: dict[str, list[tuple[str, list[str]]]] = {
    "sqnxt23v5_w1": [
        ("default (batch 64, SGD lr 0.1)", []),
        ("batch 256 (lr 0.2 by the sqrt rule), batched loader", ["--batch-size", "256", "--data-loader", "batched"]),
        ("+ Nesterov", ["--nesterov"]),
        ("+ label smoothing 0.1", ["--label-smoothing", "0.1"]),
        ("+ derandomized flips", ["--derandomized-flips"]),
        ("+ EMA 0.999", ["--ema-decay", "0.999"]),
        ("+ Cutout 8", ["--cutout", "8"]),
        ("all of the above back at batch 64 (lr 0.1)", ["--batch-size", "64"]),
        ("+ whitened stem", ["--whiten-stem"]),
    ],
    "squeezenet1_1": [
        ("default (batch 64, AdamW lr 0.001)", []),
        ("batched loader", ["--data-loader", "batched"]),
        ("+ label smoothing 0.1", ["--label-smoothing", "0.1"]),
        ("+ derandomized flips", ["--derandomized-flips"]),
        ("+ EMA 0.9995", ["--ema-decay", "0.9995"]),
        ("+ Cutout 8", ["--cutout", "8"]),
        ("+ whitened stem", ["--whiten-stem"]),
    ],
}
TTA_MODES = ("flip", "flip-translate")
#: The exit status of an interrupted squeezelab command (docs/training.md, "Interruptions").
INTERRUPTED = 130


def _flags(model: str, rung: int) -> list[str]:
    return [flag for _, flags in LADDERS[model][:rung + 1] for flag in flags]


def _run(cmd: list[str], threads: int) -> str:
    """Run one squeezelab command on ``threads`` threads; a child ended by Ctrl-C (exit 130) ends the ladder too."""
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if done.returncode in (INTERRUPTED, -signal.SIGINT):
        raise KeyboardInterrupt
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout


def train_rung(model: str, rung: int, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train one (model, rung, seed) and score its last checkpoint (with test-time augmentation if asked)."""
    run_dir = Path(args.runs) / f"{model}_r{rung}_s{seed}"
    base = [sys.executable, "-m", "squeezelab", "train"]
    if (run_dir / "state.pt").is_file():
        cmd = [*base, "--resume", str(run_dir), "--no-progress"]
    else:
        cmd = [*base, model, "--data", f"cifar10:{args.data}", "--train-limit", str(args.train_limit),
               "--data-seed", "0", "--seed", str(seed), "--epochs", str(args.epochs), "--eval-every",
               str(args.epochs), "--threads", str(args.threads), "--no-progress", "-o", str(run_dir),
               *_flags(model, rung)]
    tic = time.perf_counter()
    _run(cmd, args.threads)
    seconds = time.perf_counter() - tic
    metrics = json.loads((run_dir / "metrics.json").read_text())["epochs"]
    record: dict[str, Any] = {"model": model, "rung": rung, "lever": LADDERS[model][rung][0], "seed": seed,
                              "flags": _flags(model, rung), "test_top1": metrics[-1]["val_top1"],
                              "test_loss": metrics[-1]["val_loss"], "train_top1": metrics[-1]["train_top1"],
                              "seconds": seconds}
    if rung in args.tta_rungs:
        for mode in TTA_MODES:
            out = run_dir / f"eval_{mode}.json"
            _run([sys.executable, "-m", "squeezelab", "eval", model, "--weights", str(run_dir / "last.safetensors"),
                  "--data", f"cifar10:{args.data}", "--tta", mode, "--no-progress", "--json", str(out)], args.threads)
            record[f"test_top1_{mode}"] = json.loads(out.read_text())["top1"]
    return record


def summarise(records: list[dict[str, Any]]) -> str:
    rows = []
    for model in LADDERS:
        for rung, (lever, _) in enumerate(LADDERS[model]):
            found = sorted((r for r in records if r["model"] == model and r["rung"] == rung), key=lambda r: r["seed"])
            if not found:
                continue
            top1 = [r["test_top1"] for r in found]
            tta = {m: [r[f"test_top1_{m}"] for r in found if f"test_top1_{m}" in r] for m in TTA_MODES}
            rows.append([model, rung, lever, ", ".join(f"{v:.2f}" for v in top1), f"{statistics.mean(top1):.2f}",
                         *(f"{statistics.mean(v):.2f}" if v else "" for v in tta.values())])
    return format_table(["model", "rung", "lever (cumulative)", "test top-1 per seed", "mean",
                         *(f"mean with {m}" for m in TTA_MODES)], rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"),
                        help="folder with the CIFAR-10 zips")
    parser.add_argument("--models", nargs="+", choices=sorted(LADDERS), default=list(LADDERS))
    parser.add_argument("--rungs", type=int, nargs="+", help="only these rungs (default all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-limit", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="runs at once")
    parser.add_argument("--tta-rungs", type=int, nargs="*", default=[0], help="rungs scored with TTA too")
    parser.add_argument("--runs", default="runs/levers", help="run directories")
    parser.add_argument("--json", default="benchmarks/results/fast_recipe_levers.json")
    args = parser.parse_args()
    path = Path(args.json)
    payload = json.loads(path.read_text()) if path.is_file() else {"records": []}
    done = {(r["model"], r["rung"], r["seed"]) for r in payload["records"]}
    todo = [(m, rung, s) for m in args.models for rung in range(len(LADDERS[m]))
            if args.rungs is None or rung in args.rungs for s in args.seeds if (m, rung, s) not in done]
    payload.update(protocol={"train_limit": args.train_limit, "data_seed": 0, "epochs": args.epochs,
                             "test_images": 10_000, "threads": args.threads}, machine=machine_info())
    try:
        with OtherLoad() as other, ThreadPoolExecutor(args.jobs) as pool:
            for record in pool.map(lambda job: train_rung(*job, args), todo):
                payload["records"].append(record)
                atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
                print(f"{record['model']} rung {record['rung']} seed {record['seed']}: {record['test_top1']:.2f}% "
                      f"({record['seconds']:.0f}s)", flush=True)
    except KeyboardInterrupt:
        print(f"interrupted: finished runs are in {path}; the same command resumes the rest", file=sys.stderr)
        return INTERRUPTED
    payload["other_process_cores"] = other.cores
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
    print(summarise(payload["records"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

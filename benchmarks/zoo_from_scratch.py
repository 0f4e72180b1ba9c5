"""Every zoo model trained from scratch with the default recipe on real data (scikit-learn's digits).

For each registered model: ``squeezelab.train.train`` with nothing but the data,
the input size and the epoch count set: the default recipe of docs/training.md
("Recipe"), batch 64, seed 0, small-input stems for <= 64 px. Inputs are 16 px,
or the model's smallest input when that is larger (the chapter's networks have
no small-input stem). Prints a table and writes JSON:

    .venv/bin/python benchmarks/zoo_from_scratch.py [--epochs 10] [--size 16] [--models NAME ...]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time

import torch

from squeezelab.export.timing import OtherLoad, machine_info
from squeezelab.io import atomic_write_text
from squeezelab.errors import SqueezelabError
from squeezelab.models import create_model, get_model_entry, list_models
from squeezelab.tables import format_table
from squeezelab.train import TrainConfig, train

CHANCE = 10.0


def input_size_for(name: str, wanted: int) -> int:
    """``wanted``, or the model's smallest accepted input at its design stem when that is larger."""
    try:
        model = create_model(name, num_classes=10, small_input=True)
    except SqueezelabError:  # the chapter's networks have no small-input option
        model = create_model(name, num_classes=10)
    return max(wanted, int(model.min_input_size))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--models", nargs="+", help="default: every registered model")
    parser.add_argument("--json", default="benchmarks/results/zoo_from_scratch.json")
    args = parser.parse_args()
    names = args.models or list_models()
    rows, records = [], []
    start = time.perf_counter()
    with OtherLoad() as other:
        for name in names:
            get_model_entry(name)
            size = input_size_for(name, args.size)
            with tempfile.TemporaryDirectory() as tmp:
                tic = time.perf_counter()
                try:
                    result = train(TrainConfig(name, data="digits", input_size=size, epochs=args.epochs,
                                               threads=args.threads, progress=False, output=tmp))
                except SqueezelabError as exc:  # e.g. a diverged run: recorded, and the sweep goes on
                    records.append({"model": name, "input_size": size, "epochs": args.epochs, "error": str(exc)})
                    rows.append([name, size, "-", "-", "failed", f"{time.perf_counter() - tic:.0f}"])
                    print(f"  {name}: failed: {exc}", file=sys.stderr, flush=True)
                    continue
                seconds = time.perf_counter() - tic
            first, last = result.history[0], result.history[-1]
            record = {"model": name, "input_size": size, "epochs": args.epochs,
                      "best_val_top1": result.best_top1, "final_val_top1": last["val_top1"],
                      "first_train_loss": first["train_loss"], "final_train_loss": last["train_loss"],
                      "seconds": seconds,
                      "val_top1_per_epoch": [round(r["val_top1"], 2) for r in result.history]}
            records.append(record)
            rows.append([name, size, f"{first['train_loss']:.3f}", f"{last['train_loss']:.3f}",
                         f"{result.best_top1:.1f}", f"{seconds:.0f}"])
            print(f"  {name}: {result.best_top1:.1f}% ({seconds:.0f}s)", file=sys.stderr, flush=True)
    print(format_table(["model", "px", "train loss epoch 1", f"train loss epoch {args.epochs}",
                        "best val top-1 %", "seconds"], rows))
    below = [r["model"] for r in records if r.get("best_val_top1", 0.0) < 5 * CHANCE]
    print(f"chance is {CHANCE:.0f}%; below {5 * CHANCE:.0f}%: {', '.join(below) or 'none'}; ln 10 = {math.log(10):.3f}")
    payload = {"machine": machine_info(), "other_process_cores": other.cores, "threads": args.threads,
               "seconds": time.perf_counter() - start, "results": records}
    atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

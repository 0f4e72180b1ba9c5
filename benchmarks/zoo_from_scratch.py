"""Every zoo model trained from scratch with the default recipe on real data, one seed each.

For each registered model: ``squeezelab.train.train`` with nothing but the protocol's
data, input size, subset and epoch count set: the default recipe of docs/training.md
("Recipe"), batch 64, seed 0, small-input stems for <= 64 px, no per-model flag.
Inputs are the protocol's size, or the model's smallest input when that is larger
(the chapter's networks have no small-input stem). Two protocols: scikit-learn's
digits (16 px by default) and issue 15's Fashion-MNIST protocol (5,000 training /
1,000 test images, 28 px, 5 epochs; ``recipe_spread.PROTOCOLS``). Prints a table
with the spread over models and each run's epoch-1 validation loss, and writes JSON:

    .venv/bin/python benchmarks/zoo_from_scratch.py [--protocol digits|fashion-mnist] [--epochs N] [--size N]
                                                    [--models NAME ...] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
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

from recipe_spread import PROTOCOLS

CHANCE = 10.0
#: digits as this script ran it before the Fashion-MNIST protocol (docs/training.md, "Every zoo model").
DIGITS = {"data": "digits", "input_size": 16, "epochs": 6}


def input_size_for(name: str, wanted: int) -> int:
    """``wanted``, or the model's smallest accepted input at its design stem when that is larger."""
    try:
        model = create_model(name, num_classes=10, small_input=True)
    except SqueezelabError:  # the chapter's networks have no small-input option
        model = create_model(name, num_classes=10)
    return max(wanted, int(model.min_input_size))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=("digits", "fashion-mnist"), default="digits")
    parser.add_argument("--epochs", type=int, help="default: the protocol's (digits 6, Fashion-MNIST 5)")
    parser.add_argument("--size", type=int, help="default: the protocol's (digits 16, Fashion-MNIST 28)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--models", nargs="+", help="default: every registered model")
    parser.add_argument("--json", help="default benchmarks/results/zoo_from_scratch.json (digits) or "
                                        "zoo_fashion_mnist.json")
    args = parser.parse_args()
    protocol = DIGITS if args.protocol == "digits" else {k: v for k, v in PROTOCOLS[args.protocol].items()
                                                          if k != "threads"}
    protocol = {**protocol, **{k: v for k, v in (("epochs", args.epochs), ("input_size", args.size)) if v}}
    json_path = args.json or ("benchmarks/results/zoo_from_scratch.json" if args.protocol == "digits"
                              else "benchmarks/results/zoo_fashion_mnist.json")
    names = args.models or list_models()
    rows, records = [], []
    start = time.perf_counter()
    with OtherLoad() as other:
        for name in names:
            get_model_entry(name)
            size = input_size_for(name, protocol["input_size"])
            with tempfile.TemporaryDirectory() as tmp:
                tic = time.perf_counter()
                try:
                    result = train(TrainConfig(name, **{**protocol, "input_size": size}, threads=args.threads,
                                               progress=False, output=tmp))
                except SqueezelabError as exc:  # e.g. a diverged run: recorded, and the sweep goes on
                    records.append({"model": name, "input_size": size, "epochs": protocol["epochs"],
                                    "error": str(exc)})
                    rows.append([name, size, "-", "-", "-", "failed", f"{time.perf_counter() - tic:.0f}"])
                    print(f"  {name}: failed: {exc}", file=sys.stderr, flush=True)
                    continue
                seconds = time.perf_counter() - tic
            first, last = result.history[0], result.history[-1]
            record = {"model": name, "input_size": size, "epochs": protocol["epochs"],
                      "best_val_top1": result.best_top1, "final_val_top1": last["val_top1"],
                      "first_train_loss": first["train_loss"], "final_train_loss": last["train_loss"],
                      "epoch1_val_loss": first["val_loss"], "seconds": seconds,
                      "val_top1_per_epoch": [round(r["val_top1"], 2) for r in result.history]}
            records.append(record)
            rows.append([name, size, f"{first['train_loss']:.3f}", f"{last['train_loss']:.3f}",
                         f"{first['val_loss']:.3f}", f"{result.best_top1:.1f}", f"{seconds:.0f}"])
            print(f"  {name}: {result.best_top1:.1f}% ({seconds:.0f}s)", file=sys.stderr, flush=True)
    print(format_table(["model", "px", "train loss epoch 1", f"train loss epoch {protocol['epochs']}",
                        "val loss epoch 1", "best val top-1 %", "seconds"], rows))
    top1 = [r["best_val_top1"] for r in records if "best_val_top1" in r]
    if top1:
        print(f"over {len(top1)} models: best val top-1 min {min(top1):.1f} / median {statistics.median(top1):.1f} / "
              f"max {max(top1):.1f}; blow-up bound 3 ln 10 = {3 * math.log(10):.2f} on the epoch-1 val loss")
    below = [r["model"] for r in records if r.get("best_val_top1", 0.0) < 5 * CHANCE]
    print(f"chance is {CHANCE:.0f}%; below {5 * CHANCE:.0f}%: {', '.join(below) or 'none'}; ln 10 = {math.log(10):.3f}")
    payload = {"protocol": {**protocol, "name": args.protocol}, "machine": machine_info(),
               "other_process_cores": other.cores, "threads": args.threads,
               "seconds": time.perf_counter() - start, "results": records}
    atomic_write_text(json_path, json.dumps(payload, indent=2) + "\n")
    print(f"wrote {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

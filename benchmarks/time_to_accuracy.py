"""Time to accuracy: the first epoch (and the wall-clock up to it) at which a training run's test top-1 reaches
each threshold.

Reads a ``squeezelab train`` run directory (``metrics.json``, ``config.json``), so a run that spans several
sessions (``--stop-after`` / ``--resume``) is measured from its own log: the wall-clock to an epoch is the
sum of the training seconds and the evaluation seconds (BatchNorm recomputation and the test pass) of the
epochs up to it. A run evaluated every k epochs (``--eval-every``) resolves the epoch to k. The recipe
that issue 30 measures, on all 50,000 CIFAR-10 training images, evaluated on the 10,000 test images after
every epoch:

    squeezelab train sqnxt23v5_w1 --data cifar10:DIR --recipe fast --ema-decay 0.999 --epochs 100 -o RUN
    .venv/bin/python benchmarks/time_to_accuracy.py RUN [--thresholds 85 90] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional

from squeezelab.io import atomic_write_text
from squeezelab.tables import format_table


def time_to_accuracy(rows: list[dict[str, Any]], threshold: float) -> Optional[dict[str, float]]:
    """The first evaluated epoch whose val top-1 is at least ``threshold``, with the seconds spent up to it."""
    train_seconds = eval_seconds = 0.0
    for row in rows:
        train_seconds += row["seconds"]
        eval_seconds += row.get("eval_seconds", 0.0)
        if row["val_top1"] is not None and row["val_top1"] >= threshold:
            return {"epoch": row["epoch"], "val_top1": row["val_top1"], "train_seconds": train_seconds,
                    "eval_seconds": eval_seconds, "wall_seconds": train_seconds + eval_seconds}
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a squeezelab train run directory")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[85.0, 90.0])
    parser.add_argument("--json", default="benchmarks/results/time_to_accuracy.json")
    args = parser.parse_args()
    rows = json.loads((args.run / "metrics.json").read_text())["epochs"]
    config = json.loads((args.run / "config.json").read_text())
    found = {f"{t:g}": time_to_accuracy(rows, t) for t in args.thresholds}
    table = []
    for threshold, hit in found.items():
        table.append([f"{threshold}%", *(["not reached", "", ""] if hit is None else
                                         [hit["epoch"], f"{hit['val_top1']:.2f}", f"{hit['wall_seconds'] / 60:.1f}"])])
    evaluated = [r for r in rows if r["val_top1"] is not None]
    print(f"{config['model']} on {config['data']}: {len(rows)} of {config['epochs']} epochs done, last test top-1 "
          f"{evaluated[-1]['val_top1']:.2f}%" if evaluated else "no evaluated epoch yet")
    print(format_table(["threshold", "first epoch", "test top-1", "minutes (train + eval)"], table))
    payload = {"run": str(args.run), "config": config, "epochs_done": len(rows), "thresholds": found,
               "curve": [{"epoch": r["epoch"], "val_top1": r["val_top1"], "seconds": r["seconds"],
                          "eval_seconds": r.get("eval_seconds", 0.0)} for r in rows]}
    atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

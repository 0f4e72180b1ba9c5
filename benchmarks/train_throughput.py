"""Training throughput: squeezelab's loop vs a plain PyTorch loop, NCHW vs channels_last.

For squeezenet1_1 and sqnxt23_w1 at 224 px (batch 64) and 32 px (batch 256),
on CIFAR-10 images from ``../shared/data`` (upscaled for 224), it times four
variants of each case:

* ``plain``: a DataLoader over the same dataset, ``model(x)``, cross-entropy,
  ``backward``, ``SGD.step``; nothing else (NCHW and channels_last);
* ``squeezelab``: :func:`squeezelab.train.train` (NCHW and channels_last).

Both are timed the same way: a timestamp after every optimizer step (the
``after_step`` hook for squeezelab), images/s over the steps after the first
(setup, dataset building and the warm-up step are not timed). The variants
run round-robin, ``--rounds`` times, and the best round counts. The JSON
records the thread count and the CPU time other processes used meanwhile.

    .venv/bin/python benchmarks/train_throughput.py [--steps N] [--rounds R] [--cases MODEL:SIZE:BATCH ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from squeezelab.data import build_datasets
from squeezelab.export.timing import OtherLoad, machine_info
from squeezelab.io import atomic_write_text
from squeezelab.models import create_model
from squeezelab.tables import format_table
from squeezelab.train import train

DATA = f"cifar10:{Path(__file__).resolve().parents[2] / 'shared' / 'data'}"
CASES = (("squeezenet1_1", 224, 64), ("squeezenet1_1", 32, 256), ("sqnxt23_w1", 224, 64), ("sqnxt23_w1", 32, 256))
VARIANTS = ("plain NCHW", "plain channels_last", "squeezelab NCHW", "squeezelab channels_last")


def _rate(stamps: list[float], batch: int) -> float:
    """Images/s between the first and the last step timestamp."""
    return batch * (len(stamps) - 1) / (stamps[-1] - stamps[0])


def plain_loop(model_name: str, size: int, batch: int, steps: int, channels_last: bool) -> float:
    """Images/s of a minimal loop over the same data."""
    bundle = build_datasets(DATA, size, train_limit=batch * steps)
    model = create_model(model_name, num_classes=10, small_input=size <= 64)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    stamps = []
    for x, y in DataLoader(bundle.train, batch_size=batch, shuffle=True):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        stamps.append(time.perf_counter())
    return _rate(stamps, batch)


def squeezelab_loop(model_name: str, size: int, batch: int, steps: int, channels_last: bool) -> float:
    """Images/s of :func:`squeezelab.train.train`'s steps, timed by its ``after_step`` hook."""
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        train(model=model_name, data=DATA, input_size=size, batch_size=batch, epochs=1, train_limit=batch * steps,
              val_limit=10, channels_last=channels_last, progress=False, output=tmp,
              after_step=lambda _model: stamps.append(time.perf_counter()))
    return _rate(stamps, batch)


def measure(name: str, size: int, batch: int, steps: int, rounds: int) -> dict[str, float]:
    """Best images/s of each variant over ``rounds`` round-robin rounds."""
    runners: dict[str, Callable[[], float]] = {
        "plain NCHW": lambda: plain_loop(name, size, batch, steps, False),
        "plain channels_last": lambda: plain_loop(name, size, batch, steps, True),
        "squeezelab NCHW": lambda: squeezelab_loop(name, size, batch, steps, False),
        "squeezelab channels_last": lambda: squeezelab_loop(name, size, batch, steps, True),
    }
    best = {v: 0.0 for v in VARIANTS}
    for round_index in range(rounds):
        order = VARIANTS[round_index % len(VARIANTS):] + VARIANTS[:round_index % len(VARIANTS)]
        for variant in order:
            best[variant] = max(best[variant], runners[variant]())
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="training steps per measurement (first untimed)")
    parser.add_argument("--rounds", type=int, default=2, help="round-robin repetitions; the best counts")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", default="benchmarks/results/train_throughput.json")
    parser.add_argument("--cases", nargs="+", help="subset as MODEL:SIZE:BATCH")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step is not timed)")
    torch.set_num_threads(args.threads)
    cases = [tuple(c.split(":")) for c in args.cases] if args.cases else CASES
    info = machine_info()
    rows, records = [], []
    start = time.perf_counter()
    with OtherLoad() as other:
        for name, size, batch in cases:
            size, batch = int(size), int(batch)
            rates = measure(name, size, batch, args.steps, args.rounds)
            records.append({"model": name, "input_size": size, "batch": batch, **rates})
            plain = rates["plain NCHW"]
            rows.append([name, size, batch, *(f"{rates[v]:.1f}" for v in VARIANTS),
                         f"{max(rates['squeezelab NCHW'], rates['squeezelab channels_last']) / plain:.2f}x"])
            print(f"  {name} {size}px batch {batch} done ({time.perf_counter() - start:.0f}s)", file=sys.stderr,
                  flush=True)
    print(format_table(["model", "input", "batch", *(f"{v} img/s" for v in VARIANTS), "best ours / plain NCHW"],
                       rows))
    other_text = "unknown" if other.cores is None else f"{other.cores:.2f} cores"
    print(f"{info['cpu']}, {args.threads} threads; other processes' CPU use during the run: {other_text}")
    payload = {"machine": info, "threads": args.threads, "steps": args.steps, "rounds": args.rounds,
               "other_process_cores": other.cores, "seconds": time.perf_counter() - start, "results": records}
    atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

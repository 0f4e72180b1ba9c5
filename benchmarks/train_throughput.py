"""Training throughput: squeezelab's loop vs a plain PyTorch loop, NCHW vs channels_last.

For squeezenet1_1 and sqnxt23_w1 at 224 px (batch 64) and 32 px (batch 256),
on CIFAR-10 images from ``../shared/data`` (upscaled for 224), it times

* ``plain``: DataLoader over the same dataset, ``model(x)``, cross-entropy,
  ``backward``, ``SGD.step`` — nothing else;
* ``squeezelab``: :func:`squeezelab.train.train` for the same number of steps
  (images/s of the training phase only, as metrics.json reports it), NCHW and
  channels_last.

The first step of each run is a warm-up and is not timed. It prints a table
and writes JSON with the machine load and the thread count, because on a
shared CPU the load decides the numbers. Run:
``python benchmarks/train_throughput.py [--steps N] [--threads T] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from squeezelab.data import build_datasets
from squeezelab.io import atomic_write_text
from squeezelab.models import create_model
from squeezelab.tables import format_table
from squeezelab.train import train

DATA = f"cifar10:{Path(__file__).resolve().parents[2] / 'shared' / 'data'}"
CASES = (("squeezenet1_1", 224, 64), ("squeezenet1_1", 32, 256), ("sqnxt23_w1", 224, 64), ("sqnxt23_w1", 32, 256))


def plain_loop(model_name: str, size: int, batch: int, steps: int, channels_last: bool) -> float:
    """Images/s of a minimal loop over the same data (steps after the first)."""
    bundle = build_datasets(DATA, size, train_limit=batch * steps)
    model = create_model(model_name, num_classes=10, small_input=size <= 64)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    start, images = None, 0
    for i, (x, y) in enumerate(DataLoader(bundle.train, batch_size=batch, shuffle=True)):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i == 0:
            start = time.perf_counter()
        else:
            images += len(y)
    return images / (time.perf_counter() - start)


def squeezelab_loop(model_name: str, size: int, batch: int, steps: int, channels_last: bool) -> float:
    """Images/s of squeezelab's training phase, first step excluded (two runs: 1 step and ``steps`` steps)."""
    timings = []
    for n in (1, steps):
        with tempfile.TemporaryDirectory() as tmp:
            result = train(model=model_name, data=DATA, input_size=size, batch_size=batch, epochs=1,
                           train_limit=batch * n, val_limit=10, channels_last=channels_last, progress=False,
                           output=tmp)
        timings.append(result.history[0]["seconds"])
    return batch * (steps - 1) / max(timings[1] - timings[0], 1e-9)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="training steps per measurement (first is warm-up)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", default="train_throughput.json")
    parser.add_argument("--cases", nargs="+", help="subset as MODEL:SIZE:BATCH")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = [tuple(c.split(":")) for c in args.cases] if args.cases else CASES
    load_before = os.getloadavg()
    rows, records = [], []
    for name, size, batch in cases:
        size, batch = int(size), int(batch)
        plain = plain_loop(name, size, batch, args.steps, channels_last=False)
        ours = squeezelab_loop(name, size, batch, args.steps, channels_last=False)
        ours_cl = squeezelab_loop(name, size, batch, args.steps, channels_last=True)
        records.append({"model": name, "input_size": size, "batch": batch, "plain_nchw": plain,
                        "squeezelab_nchw": ours, "squeezelab_channels_last": ours_cl})
        rows.append([name, size, batch, f"{plain:.1f}", f"{ours:.1f}", f"{ours_cl:.1f}", f"{ours / plain:.2f}"])
    print(format_table(["model", "input", "batch", "plain img/s", "squeezelab NCHW", "squeezelab channels_last",
                        "ratio"], rows))
    payload = {"device": "cpu", "threads": args.threads, "cpu_count": os.cpu_count(), "steps": args.steps,
               "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "torch": torch.__version__,
               "results": records}
    atomic_write_text(args.json, json.dumps(payload, indent=2))
    print(f"threads {args.threads}, load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}; "
          f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

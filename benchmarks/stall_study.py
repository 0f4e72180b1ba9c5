"""Why SqueezeNet trained from scratch stalls at chance, measured (``docs/small-inputs.md``).

Protocol (the issue's): the first 5,000 Fashion-MNIST training images at
28 px (grey replicated to RGB, normalised), a plain PyTorch loop, SGD momentum
0.9, weight decay 5e-4, batch 64, 5 epochs, seed 0, tested on the first 2,000
test images. Variants:

* ``torchvision``: ``torchvision.models.squeezenet1_1`` as it is, lr 0.01;
* ``torchvision+bias``: the same with conv10's bias initialised to
  :data:`~squeezelab.models.squeezenet.CONV10_BIAS_INIT` (squeezelab's default);
* ``squeezelab``: ``create_model("squeezenet1_1", small_input=True)`` with the
  SGD training defaults of the time (lr 0.04 x 64/512, one warmup epoch, cosine; SqueezeNet
  trains with AdamW by default now, docs/training.md "Short schedules");
* ``small-cnn``: two conv layers and two FC layers, lr 0.01 (the reference).

Each epoch prints test accuracy and the share of images whose ten logits are
all zero (the dead-classifier signature). Run:
``.venv/bin/python benchmarks/stall_study.py [--variants ...] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from squeezelab.data.datasets import FASHION_MNIST_DIR, read_fashion_mnist
from squeezelab.io import atomic_write_text
from squeezelab.models import create_model
from squeezelab.models.squeezenet import CONV10_BIAS_INIT
from squeezelab.tables import format_table
from squeezelab.train.engine import default_lr, lr_factor

VARIANTS = ("torchvision", "torchvision+bias", "squeezelab", "small-cnn")


def _tensors(directory: str, n_train: int, n_test: int) -> tuple[torch.Tensor, ...]:
    (x_train, y_train), (x_test, y_test) = read_fashion_mnist(directory)

    def prep(x):
        t = torch.tensor(x, dtype=torch.float32)[:, None] / 255.0
        return ((t - 0.2860) / 0.3530).repeat(1, 3, 1, 1)

    return (prep(x_train[:n_train]), torch.tensor(y_train[:n_train]), prep(x_test[:n_test]),
            torch.tensor(y_test[:n_test]))


def _small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def _variant(name: str) -> tuple[nn.Module, float, Optional[Callable[[int, int], float]]]:
    """(model, lr, schedule(step, total) or None) for one variant."""
    if name == "torchvision":
        return torchvision.models.squeezenet1_1(num_classes=10), 0.01, None
    if name == "torchvision+bias":
        model = torchvision.models.squeezenet1_1(num_classes=10)
        nn.init.constant_(model.classifier[1].bias, CONV10_BIAS_INIT)
        return model, 0.01, None
    if name == "squeezelab":
        model = create_model("squeezenet1_1", num_classes=10, small_input=True)
        return model, default_lr(False, 64), lambda step, total: lr_factor(step, total, total // 5, "cosine")
    if name == "small-cnn":
        return _small_cnn(), 0.01, None
    raise SystemExit(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")


def run_variant(name: str, data: tuple[torch.Tensor, ...], epochs: int = 5, batch_size: int = 64,
                seed: int = 0) -> list[dict[str, float]]:
    """Train one variant; per epoch: test top-1 (%), share of all-zero logit rows (%), seconds."""
    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = data
    model, lr, schedule = _variant(name)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    total, step, rows, start = epochs * steps_per_epoch, 0, [], time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x_train))
        for i in range(0, len(x_train), batch_size):
            if schedule is not None:
                for group in optimizer.param_groups:
                    group["lr"] = lr * schedule(step, total)
            idx = order[i:i + batch_size]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(x_test[j:j + 500]) for j in range(0, len(x_test), 500)])
        rows.append({"epoch": epoch + 1, "top1": 100.0 * (logits.argmax(1) == y_test).float().mean().item(),
                     "dead_rows": 100.0 * (logits == 0).all(dim=1).float().mean().item(),
                     "seconds": time.perf_counter() - start})
        print(f"{name:18s} epoch {epoch + 1}: test top-1 {rows[-1]['top1']:.1f}%  all-zero logits "
              f"{rows[-1]['dead_rows']:.0f}%  {rows[-1]['seconds']:.0f}s", flush=True)
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--data", default=FASHION_MNIST_DIR, help="Fashion-MNIST IDX directory")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--json", help="write the per-epoch numbers here")
    args = parser.parse_args(argv)
    data = _tensors(args.data, 5000, 2000)
    results = {name: run_variant(name, data, epochs=args.epochs) for name in args.variants}
    rows = [[name, f"{r[-1]['top1']:.1f}", f"{r[-1]['dead_rows']:.0f}", f"{r[-1]['seconds']:.0f}"]
            for name, r in results.items()]
    print(format_table(["variant", f"test top-1 % after {args.epochs} epochs", "all-zero logits %", "seconds"], rows))
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

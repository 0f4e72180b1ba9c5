"""Training throughput: squeezelab's loop as it runs by default vs a plain torchvision-style FP32 loop.

For squeezenet1_1 and sqnxt23_w1 at 224 px (batch 64) and 32 px (batch 256),
on CIFAR-10 images from ``../shared/data`` (upscaled for 224), it times four
variants of each case:

* ``plain NCHW`` (the reference) and ``plain channels_last``: a torchvision-style
  loop: a Dataset that decodes each JPEG from the zip and applies torchvision's
  transforms (RandomResizedCrop for 224, pad-4 random crop for 32, flip, ``ToTensor``, ``Normalize``),
  a shuffling ``DataLoader``, ``model(x)``, cross-entropy, ``backward``, ``SGD.step``;
  FP32, nothing else;
* ``squeezelab amp off``: :func:`squeezelab.train.train` with ``amp="off"`` (FP32, channels_last);
* ``squeezelab amp auto``: :func:`squeezelab.train.train` with ``amp="auto"``: channels_last and
  whatever ``--amp auto`` picks on this CPU (BF16 autocast where the CPU has AVX512-BF16 or AMX
  and PyTorch's kernels are not capped; recorded as ``auto_precision``).

squeezelab runs two epochs of ``--steps`` steps and only the second is timed: the
steady state of a run, after the first epoch has decoded the (cached) CIFAR-10
JPEGs; the plain loop decodes every epoch, so one epoch is timed. Both are timed by
a timestamp after every optimizer step (``after_step`` for squeezelab), images/s
over the steps after the epoch's first. The variants run round-robin, ``--rounds``
times, and the best round counts. First it times the data alone (microseconds per
32 px sample: the plain Dataset, squeezelab's first read and its cached reads). The
JSON records the CPU flags, the precision ``auto`` chose, the thread count and the
CPU time other processes used meanwhile.

    .venv/bin/python benchmarks/train_throughput.py [--steps N] [--rounds R] [--sizes 32 ...]
        [--cases MODEL:SIZE:BATCH ...] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from squeezelab.cpu import torch_bf16_native
from squeezelab.data import build_datasets
from squeezelab.export.timing import OtherLoad, machine_info
from squeezelab.io import atomic_write_text
from squeezelab.models import create_model
from squeezelab.tables import format_table
from squeezelab.train import train
from squeezelab.train.engine import choose_amp, precision_label

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"
DATA = f"cifar10:{ROOT}"
CASES = (("squeezenet1_1", 224, 64), ("squeezenet1_1", 32, 256), ("sqnxt23_w1", 224, 64), ("sqnxt23_w1", 32, 256))
VARIANTS = ("plain NCHW", "plain channels_last", "squeezelab amp off", "squeezelab amp auto")


class PlainCifar(Dataset):
    """torchvision-style: a fixed random ``limit`` of the training JPEGs, decoded per access, then transforms."""

    def __init__(self, size: int, limit: int) -> None:
        self.path = ROOT / "cifar10_train_jpeg.zip"
        with zipfile.ZipFile(self.path) as archive:
            members = sorted(n for n in archive.namelist() if n.endswith(".jpg"))
        classes = sorted({m.split("/")[-2] for m in members})
        self.members = [members[i] for i in np.random.default_rng(0).permutation(len(members))[:limit]]
        self.labels = [classes.index(m.split("/")[-2]) for m in self.members]
        crop = T.RandomResizedCrop(size) if size > 64 else T.RandomCrop(size, padding=size // 8)
        self.transform = T.Compose([crop, T.RandomHorizontalFlip(), T.ToTensor(),
                                    T.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))])
        self.zip: zipfile.ZipFile | None = None

    def __len__(self) -> int:
        return len(self.members)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        self.zip = self.zip or zipfile.ZipFile(self.path)
        with self.zip.open(self.members[index]) as handle:
            image = Image.open(handle).convert("RGB")
        return self.transform(image), self.labels[index]


def data_cost(samples: int = 1024) -> dict[str, float]:
    """Microseconds per 32 px training sample: the plain Dataset, and squeezelab's first read and cached reads."""
    plain = PlainCifar(32, samples)
    ours = build_datasets(DATA, 32, train_limit=samples, val_limit=10).train

    def per_sample(read: Callable[[int], object]) -> float:
        tic = time.perf_counter()
        for i in range(samples):
            read(i)
        return (time.perf_counter() - tic) / samples * 1e6

    plain[0], ours[(samples - 1, 0)]  # open the zips first; leave the other samples unread
    return {"plain torchvision": per_sample(plain.__getitem__),
            "squeezelab first read": per_sample(lambda i: ours[(i, i)]),
            "squeezelab cached": per_sample(lambda i: ours[(i, i + 1)])}


def _rate(stamps: list[float], batch: int) -> float:
    """Images/s between the first and the last step timestamp."""
    return batch * (len(stamps) - 1) / (stamps[-1] - stamps[0])


def plain_loop(model_name: str, size: int, batch: int, steps: int, channels_last: bool) -> float:
    """Images/s of a minimal torchvision-style FP32 loop over the same images."""
    model = create_model(model_name, num_classes=10, small_input=size <= 64)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    stamps = []
    for x, y in DataLoader(PlainCifar(size, batch * steps), batch_size=batch, shuffle=True):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        stamps.append(time.perf_counter())
    return _rate(stamps, batch)


def squeezelab_loop(model_name: str, size: int, batch: int, steps: int, amp: str) -> float:
    """Images/s of :func:`squeezelab.train.train`'s second epoch, timed by its ``after_step`` hook."""
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        train(model=model_name, data=DATA, input_size=size, batch_size=batch, epochs=2, train_limit=batch * steps,
              val_limit=10, amp=amp, progress=False, output=tmp,
              after_step=lambda _model: stamps.append(time.perf_counter()))
    return _rate(stamps[steps:], batch)


def measure(name: str, size: int, batch: int, steps: int, rounds: int) -> dict[str, float]:
    """Best images/s of each variant over ``rounds`` round-robin rounds."""
    runners: dict[str, Callable[[], float]] = {
        "plain NCHW": lambda: plain_loop(name, size, batch, steps, False),
        "plain channels_last": lambda: plain_loop(name, size, batch, steps, True),
        "squeezelab amp off": lambda: squeezelab_loop(name, size, batch, steps, "off"),
        "squeezelab amp auto": lambda: squeezelab_loop(name, size, batch, steps, "auto"),
    }
    best = {v: 0.0 for v in VARIANTS}
    for round_index in range(rounds):
        order = VARIANTS[round_index % len(VARIANTS):] + VARIANTS[:round_index % len(VARIANTS)]
        for variant in order:
            best[variant] = max(best[variant], runners[variant]())
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="training steps per measured epoch (first untimed)")
    parser.add_argument("--rounds", type=int, default=3, help="round-robin repetitions; the best counts")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", default="benchmarks/results/train_throughput.json")
    parser.add_argument("--sizes", type=int, nargs="+", help="only these input sizes (e.g. 32)")
    parser.add_argument("--cases", nargs="+", help="subset as MODEL:SIZE:BATCH")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step is not timed)")
    torch.set_num_threads(args.threads)
    cases = [(c.split(":")[0], int(c.split(":")[1]), int(c.split(":")[2])) for c in args.cases] if args.cases \
        else list(CASES)
    cases = [c for c in cases if not args.sizes or c[1] in args.sizes]
    info = machine_info()
    amp_dtype, amp_why = choose_amp("auto", torch.device("cpu"))
    auto_precision = f"{precision_label(amp_dtype)} ({amp_why})"
    rows, records = [], []
    start = time.perf_counter()
    with OtherLoad() as other:
        data_us = data_cost()
        print("data, microseconds per 32 px sample: " + ", ".join(f"{k} {v:.0f}" for k, v in data_us.items()),
              file=sys.stderr, flush=True)
        for name, size, batch in cases:
            rates = measure(name, size, batch, args.steps, args.rounds)
            plain = rates["plain NCHW"]
            speedup = {v: rates[v] / plain for v in VARIANTS}
            records.append({"model": name, "input_size": size, "batch": batch, "images_per_s": rates,
                            "vs_plain_nchw": speedup})
            rows.append([name, size, batch, *(f"{rates[v]:.1f}" for v in VARIANTS),
                         f"{speedup['squeezelab amp off']:.2f}x", f"{speedup['squeezelab amp auto']:.2f}x"])
            print(f"  {name} {size}px batch {batch} done ({time.perf_counter() - start:.0f}s)", file=sys.stderr,
                  flush=True)
    print(format_table(["model", "input", "batch", *(f"{v} img/s" for v in VARIANTS), "amp off / plain",
                        "amp auto / plain"], rows))
    other_text = "unknown" if other.cores is None else f"{other.cores:.2f} cores"
    print(f"{info['cpu']} ({info['capability']}), {args.threads} threads, squeezelab --amp auto precision "
          f"{auto_precision}; other processes' CPU use during the run: {other_text}")
    payload = {"machine": info, "torch_bf16_native": torch_bf16_native(),
               "auto_precision": auto_precision, "threads": args.threads, "steps": args.steps,
               "rounds": args.rounds, "data_us_per_sample": data_us, "other_process_cores": other.cores,
               "seconds": time.perf_counter() - start, "results": records}
    atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

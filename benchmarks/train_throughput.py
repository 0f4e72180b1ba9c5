"""Training throughput: squeezelab's loops (the default recipe and ``--recipe fast``) vs a plain torchvision loop.

For squeezenet1_1 and sqnxt23_w1 at 224 px (batch 64) and 32 px (batch 256),
on CIFAR-10 images from ``../shared/data`` (upscaled for 224), it times these variants of each case,
each in a fresh process (so allocator settings and caches of one do not carry into the next):

* ``plain NCHW`` (the reference) and ``plain channels_last``: a torchvision-style
  loop: a Dataset that decodes each JPEG from the zip and applies torchvision's
  transforms (RandomResizedCrop for 224, pad-4 random crop for 32, flip, ``ToTensor``, ``Normalize``),
  a shuffling ``DataLoader``, ``model(x)``, cross-entropy, ``backward``, ``SGD.step``;
  FP32, nothing else;
* ``squeezelab amp off``: :func:`squeezelab.train.train` with ``amp="off"`` (FP32, channels_last);
* ``squeezelab default``: :func:`squeezelab.train.train` as it runs by default (``--amp auto``: channels_last
  and BF16 autocast where the CPU has native BF16; recorded as ``auto_precision``);
* ``squeezelab fast``: ``recipe="fast"`` (batched uint8 augmentation, derandomised flips; inputs of at most
  64 px) at the same batch;
* ``baseline default`` (with ``--baseline-src DIR``): ``squeezelab default`` run from another checkout's
  ``src`` folder, e.g. the commit before a change (``git worktree add /tmp/base COMMIT``), in the same run.

squeezelab runs two epochs of ``--steps`` steps and only the second is timed: the
steady state of a run, after the first epoch has decoded the (cached) CIFAR-10
JPEGs; the plain loop decodes every epoch, so one epoch is timed. Both are timed by
a timestamp after every optimizer step (``after_step`` for squeezelab), images/s
over the steps after the epoch's first. The variants run round-robin, ``--rounds``
times, and the best round counts. First it times the data alone (microseconds per
32 px sample: the plain Dataset, squeezelab's first read and its cached reads) and the
machine's GEMM peak (fp32 and bf16 ``torch.mm``, the practical FMA peak), against which each
variant's GFLOP/s is reported (3 x 2 x the forward MACs per image: forward, and a backward of twice
its work). The JSON records the CPU flags, the precision ``auto`` chose, the thread count and the
CPU time other processes used meanwhile.

    .venv/bin/python benchmarks/train_throughput.py [--steps N] [--rounds R] [--sizes 32 ...]
        [--cases MODEL:SIZE:BATCH ...] [--variants V ...] [--baseline-src DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
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

from squeezelab.analysis.counting import count_macs
from squeezelab.cpu import torch_bf16_native
from squeezelab.data import build_datasets
from squeezelab.export.timing import OtherLoad, machine_info, sgemm_gflops
from squeezelab.io import atomic_write_text
from squeezelab.models import create_model
from squeezelab.tables import format_table
from squeezelab.train import train
from squeezelab.train.engine import choose_amp, precision_label

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"
DATA = f"cifar10:{ROOT}"
CASES = (("squeezenet1_1", 224, 64), ("squeezenet1_1", 32, 256), ("sqnxt23_w1", 224, 64), ("sqnxt23_w1", 32, 256))
VARIANTS = ("plain NCHW", "plain channels_last", "squeezelab amp off", "squeezelab default", "squeezelab fast")
BASELINE = "baseline default"


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


def squeezelab_loop(model_name: str, size: int, batch: int, steps: int, **options: object) -> float:
    """Images/s of :func:`squeezelab.train.train`'s second epoch, timed by its ``after_step`` hook."""
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        train(model=model_name, data=DATA, input_size=size, batch_size=batch, epochs=2, train_limit=batch * steps,
              val_limit=10, progress=False, output=tmp, after_step=lambda _model: stamps.append(time.perf_counter()),
              **options)
    return _rate(stamps[steps:], batch)


#: variant -> how its worker process measures it
RUNNERS: dict[str, Callable[[str, int, int, int], float]] = {
    "plain NCHW": lambda name, size, batch, steps: plain_loop(name, size, batch, steps, False),
    "plain channels_last": lambda name, size, batch, steps: plain_loop(name, size, batch, steps, True),
    "squeezelab amp off": lambda name, size, batch, steps: squeezelab_loop(name, size, batch, steps, amp="off"),
    "squeezelab default": lambda name, size, batch, steps: squeezelab_loop(name, size, batch, steps),
    "squeezelab fast": lambda name, size, batch, steps: squeezelab_loop(name, size, batch, steps, recipe="fast"),
    BASELINE: lambda name, size, batch, steps: squeezelab_loop(name, size, batch, steps),
}


def measure_in_process(variant: str, case: tuple[str, int, int], steps: int, threads: int,
                       baseline_src: str | None) -> float:
    """Images/s of one variant, measured by a fresh worker process (``--worker``)."""
    env = dict(os.environ)
    if variant == BASELINE:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [baseline_src, env.get("PYTHONPATH")]))
    name, size, batch = case
    done = subprocess.run([sys.executable, __file__, "--worker", variant, f"{name}:{size}:{batch}", "--steps",
                           str(steps), "--threads", str(threads)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{variant} {name}:{size}:{batch} failed: {done.stderr.strip()[-800:]}")
    return float(done.stdout.strip().splitlines()[-1])


def measure(case: tuple[str, int, int], variants: list[str], steps: int, rounds: int, threads: int,
            baseline_src: str | None) -> dict[str, float]:
    """Best images/s of each variant over ``rounds`` round-robin rounds."""
    best = {v: 0.0 for v in variants}
    for round_index in range(rounds):
        order = variants[round_index % len(variants):] + variants[:round_index % len(variants)]
        for variant in order:
            best[variant] = max(best[variant], measure_in_process(variant, case, steps, threads, baseline_src))
    return best


def _case(text: str) -> tuple[str, int, int]:
    name, size, batch = text.split(":")
    return name, int(size), int(batch)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="training steps per measured epoch (first untimed)")
    parser.add_argument("--rounds", type=int, default=3, help="round-robin repetitions; the best counts")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", default="benchmarks/results/train_throughput.json")
    parser.add_argument("--sizes", type=int, nargs="+", help="only these input sizes (e.g. 32)")
    parser.add_argument("--cases", nargs="+", help="subset as MODEL:SIZE:BATCH")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--baseline-src", metavar="DIR", help="another checkout's src folder: adds the variant "
                                                               f"'{BASELINE}' measured from it")
    parser.add_argument("--worker", metavar="VARIANT", help=argparse.SUPPRESS)
    parser.add_argument("worker_case", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step is not timed)")
    torch.set_num_threads(args.threads)
    if args.worker:
        print(RUNNERS[args.worker](*_case(args.worker_case), args.steps))
        return 0
    variants = list(args.variants) + ([BASELINE] if args.baseline_src else [])
    cases = [_case(c) for c in args.cases] if args.cases else list(CASES)
    cases = [c for c in cases if not args.sizes or c[1] in args.sizes]
    info = machine_info()
    amp_dtype, amp_why = choose_amp("auto", torch.device("cpu"))
    auto_precision = f"{precision_label(amp_dtype)} ({amp_why})"
    peak = {"fp32": sgemm_gflops(args.threads, n=2048, reps=5),
            "bf16": sgemm_gflops(args.threads, n=2048, reps=5, dtype=torch.bfloat16)}
    auto_peak = peak["bf16" if amp_dtype == torch.bfloat16 else "fp32"]
    rows, records = [], []
    start = time.perf_counter()
    with OtherLoad() as other:
        data_us = data_cost()
        print("data, microseconds per 32 px sample: " + ", ".join(f"{k} {v:.0f}" for k, v in data_us.items()),
              file=sys.stderr, flush=True)
        for case in cases:
            name, size, batch = case
            rates = measure(case, variants, args.steps, args.rounds, args.threads, args.baseline_src)
            flops = 6 * count_macs(create_model(name, num_classes=10, small_input=size <= 64), size)
            gflops = {v: rates[v] * flops / 1e9 for v in variants}
            reference = rates[BASELINE] if BASELINE in rates else rates.get("squeezelab default")
            records.append({"model": name, "input_size": size, "batch": batch, "images_per_s": rates,
                            "vs_plain_nchw": {v: rates[v] / rates["plain NCHW"] for v in variants
                                              if "plain NCHW" in rates},
                            "fast_vs_default": rates["squeezelab fast"] / reference
                            if reference and "squeezelab fast" in rates else None,
                            "train_gflops": gflops, "flops_per_image": flops})
            rows.append([name, size, batch, *(f"{rates[v]:.1f}" for v in variants),
                         "" if records[-1]["fast_vs_default"] is None else f"{records[-1]['fast_vs_default']:.2f}x",
                         f"{gflops.get('squeezelab fast', 0.0):.0f} ({gflops.get('squeezelab fast', 0.0) / auto_peak:.0%})"])
            print(f"  {name} {size}px batch {batch} done ({time.perf_counter() - start:.0f}s)", file=sys.stderr,
                  flush=True)
    versus = BASELINE if args.baseline_src else "squeezelab default"
    print(format_table(["model", "input", "batch", *(f"{v} img/s" for v in variants), f"fast / {versus}",
                        "fast GFLOP/s (of GEMM peak)"], rows))
    other_text = "unknown" if other.cores is None else f"{other.cores:.2f} cores"
    print(f"{info['cpu']} ({info['capability']}), {args.threads} threads, squeezelab --amp auto precision "
          f"{auto_precision}; GEMM peak fp32 {peak['fp32']:.0f} / bf16 {peak['bf16']:.0f} GFLOP/s; other processes' "
          f"CPU use during the run: {other_text}")
    payload = {"machine": info, "torch_bf16_native": torch_bf16_native(),
               "auto_precision": auto_precision, "threads": args.threads, "steps": args.steps,
               "rounds": args.rounds, "baseline_src": args.baseline_src, "gemm_peak_gflops": peak,
               "data_us_per_sample": data_us, "other_process_cores": other.cores,
               "seconds": time.perf_counter() - start, "results": records}
    atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Does ``torch.compile`` (inductor, CPU) speed up a training step? (issue 30, throughput candidates)

One training step as the trainer takes it: 32 px inputs, batch 256, channels_last, bf16 autocast where the
CPU has native BF16, cross-entropy with label smoothing, SGD with Nesterov momentum; the model eager and
the same model through ``torch.compile`` (default mode). Synthetic inputs (the data path is not timed).
Each (model, mode) runs in a fresh process: the first step (compilation included) is reported apart,
then ``--warmup`` steps, then ``--steps`` timed steps. Prints a table and writes JSON with the machine.

    .venv/bin/python benchmarks/compile_probe.py [--threads 1] [--json benchmarks/results/compile_probe.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from squeezelab.export.timing import machine_info
from squeezelab.io import atomic_write_text
from squeezelab.models import create_model
from squeezelab.tables import format_table

MODELS = ("squeezenet1_1", "sqnxt23_w1")
MODES = ("eager", "compile")


def time_steps(model_name: str, mode: str, threads: int, warmup: int, steps: int) -> dict[str, float]:
    """Seconds of the first step and images/s over ``steps`` steps after ``warmup`` more."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=10, small_input=True).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    images = torch.randn(256, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (256,))
    net = torch.compile(model) if mode == "compile" else model
    bf16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(net(images).float(), labels, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return {"first_step_s": first, "images_per_s": 256 * steps / (time.perf_counter() - start), "bf16": bf16}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--json", default="benchmarks/results/compile_probe.json")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "MODE"), help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(time_steps(*args.one, args.threads, args.warmup, args.steps)))
        return
    results = []
    for model_name in MODELS:
        for mode in MODES:
            output = subprocess.run([sys.executable, __file__, "--one", model_name, mode, "--threads",
                                     str(args.threads), "--warmup", str(args.warmup), "--steps", str(args.steps)],
                                    check=True, capture_output=True, text=True).stdout
            results.append({"model": model_name, "mode": mode, **json.loads(output.strip().splitlines()[-1])})
    eager = {r["model"]: r["images_per_s"] for r in results if r["mode"] == "eager"}
    rows = [[r["model"], r["mode"], f"{r['first_step_s']:.1f}", f"{r['images_per_s']:.0f}",
             f"{r['images_per_s'] / eager[r['model']]:.2f}x"] for r in results]
    print(format_table(["model", "mode", "first step s", "img/s", "vs eager"], rows))
    payload = {"machine": machine_info(), "threads": args.threads, "batch": 256, "size": 32, "results": results}
    atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

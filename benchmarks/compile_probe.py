"""Where does a CPU training step spend its time, and does ``torch.compile`` (inductor) win any of it back?
(issue 30, throughput candidates)

One training step as the trainer takes it: 32 px inputs, batch 256, channels_last, bf16 autocast where the
CPU has native BF16, cross-entropy with label smoothing, SGD with Nesterov momentum; synthetic inputs (the
data path is not timed). Three modes, each (model, mode) in a fresh process:

* ``eager``: the model as the trainer runs it;
* ``compile``: the whole model through ``torch.compile`` (default mode);
* ``compile-bn-relu``: only each BatchNorm + ReLU pair compiled, the fusion that a memory-bound
  BatchNorm network would need, with the convolutions left to oneDNN (models with such pairs only).

The first step (compilation included) is reported apart, then ``--warmup`` steps, then ``--steps`` timed
steps. ``eager`` is also profiled (``torch.profiler``, 2 steps): each operator category's share of the
step's CPU time, and the Amdahl bound ``1 / convolution share``, the speed-up if every other operator
took no time. Last, BatchNorm + ReLU alone, forward and backward on one (256, C, 32, 32) channels_last
activation, eager (ATen) against compiled (inductor's fused kernel). Prints three tables and writes JSON
with the machine.

    .venv/bin/python benchmarks/compile_probe.py [--threads 1] [--json benchmarks/results/compile_probe.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import defaultdict
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from _script import write_results
from squeezelab.cpu import cpu_bf16_fast
from squeezelab.models import create_model
from squeezelab.tables import format_table

MODELS = ("squeezenet1_1", "sqnxt23_w1")
MODES = ("eager", "compile", "compile-bn-relu")

#: Operator categories of the profile (ATen operator names, forward and backward).
CATEGORIES = {
    "convolution": ("aten::mkldnn_convolution", "aten::convolution_backward"),
    "batch norm": ("aten::native_batch_norm", "aten::native_batch_norm_backward"),
    "relu": ("aten::clamp_min_", "aten::relu_", "aten::threshold_backward"),
    "max-pool": ("aten::max_pool2d_with_indices", "aten::max_pool2d_with_indices_backward"),
    "concat": ("aten::cat",),
    "residual add": ("aten::add",),
}


class BatchNormReLU(nn.Module):
    """BatchNorm then ReLU as one module, so that ``torch.compile`` sees (and may fuse) the pair."""

    def __init__(self, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        self.bn = bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(x))


def bn_relu_units(model: nn.Module) -> list[nn.Module]:
    """The model's conv + BN + ReLU units: submodules with a BatchNorm ``bn`` and a ReLU ``act``."""
    return [m for m in model.modules() if isinstance(getattr(m, "bn", None), nn.BatchNorm2d)
            and isinstance(getattr(m, "act", None), nn.ReLU)]


def compile_bn_relu_pairs(model: nn.Module) -> None:
    """Replace every conv + BN + ReLU unit's BN by a compiled BN + ReLU and its ReLU by an identity."""
    for unit in bn_relu_units(model):
        unit.bn = torch.compile(BatchNormReLU(unit.bn))
        unit.act = nn.Identity()


def training_step(model_name: str, mode: str, bf16: bool) -> Callable[[], None]:
    """One SGD step of ``model_name`` (CIFAR-10 shape) in ``mode``, under bf16 autocast if ``bf16``, as a closure."""
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=10, small_input=True).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    images = torch.randn(256, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (256,))
    net: Callable[[torch.Tensor], torch.Tensor] = model
    if mode == "compile":
        net = torch.compile(model)
    elif mode == "compile-bn-relu":
        compile_bn_relu_pairs(model)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(net(images).float(), labels, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def category_shares(step: Callable[[], None], steps: int = 2) -> dict[str, float]:
    """Each operator category's share of the self CPU time of ``steps`` profiled steps (the rest: "other")."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        for _ in range(steps):
            step()
    category_of = {op: category for category, ops in CATEGORIES.items() for op in ops}
    totals: dict[str, float] = defaultdict(float)
    for event in profile.key_averages():
        totals[category_of.get(event.key, "other")] += event.self_cpu_time_total
    whole = sum(totals.values())
    return {category: totals[category] / whole for category in (*CATEGORIES, "other")}


def time_steps(model_name: str, mode: str, warmup: int, steps: int) -> dict[str, Any]:
    """Seconds of the first step, images/s over ``steps`` steps after ``warmup`` more, and (eager) the profile."""
    bf16 = cpu_bf16_fast()
    step = training_step(model_name, mode, bf16)
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    result: dict[str, Any] = {"first_step_s": first, "images_per_s": 256 * steps / (time.perf_counter() - start),
                              "bf16": bf16}
    if mode == "eager":
        result["op_shares"] = category_shares(step)
    return result


def bn_relu_milliseconds(channels: int, dtype: torch.dtype, compiled: bool, repeats: int = 5) -> float:
    """Milliseconds of one forward and backward of BatchNorm + ReLU on a (256, channels, 32, 32) activation."""
    module = BatchNormReLU(nn.BatchNorm2d(channels)).to(dtype).to(memory_format=torch.channels_last)
    run: Callable[[torch.Tensor], torch.Tensor] = torch.compile(module) if compiled else module
    activation = torch.randn(256, channels, 32, 32, dtype=dtype).contiguous(memory_format=torch.channels_last)
    activation.requires_grad_()
    for _ in range(3):
        run(activation).sum().backward()
    start = time.perf_counter()
    for _ in range(repeats):
        run(activation).sum().backward()
    return 1000 * (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--json", default="benchmarks/results/compile_probe.json")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "MODE"), help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(time_steps(*args.one, args.warmup, args.steps)))
        return
    results = []
    for model_name in args.models:
        has_bn_relu = bool(bn_relu_units(create_model(model_name, num_classes=10)))
        for mode in MODES:
            if mode == "compile-bn-relu" and not has_bn_relu:
                continue
            output = subprocess.run([sys.executable, __file__, "--one", model_name, mode, "--threads",
                                     str(args.threads), "--warmup", str(args.warmup), "--steps", str(args.steps)],
                                    check=True, capture_output=True, text=True).stdout
            results.append({"model": model_name, "mode": mode, **json.loads(output.strip().splitlines()[-1])})
    eager = {r["model"]: r for r in results if r["mode"] == "eager"}
    rows = [[r["model"], r["mode"], f"{r['first_step_s']:.1f}", f"{r['images_per_s']:.0f}",
             f"{r['images_per_s'] / eager[r['model']]['images_per_s']:.2f}x"] for r in results]
    print(format_table(["model", "mode", "first step s", "img/s", "vs eager"], rows))
    categories = [*CATEGORIES, "other"]
    rows = [[name, *(f"{100 * r['op_shares'][c]:.1f}" for c in categories),
             f"{1 / r['op_shares']['convolution']:.2f}x"] for name, r in eager.items()]
    print(format_table(["model (eager, % of step)", *categories, "bound: convolutions only"], rows))
    kernels = [{"dtype": str(dtype).removeprefix("torch."), "channels": channels,
                "eager_ms": bn_relu_milliseconds(channels, dtype, compiled=False),
                "compiled_ms": bn_relu_milliseconds(channels, dtype, compiled=True)}
               for dtype in (torch.bfloat16, torch.float32) for channels in (32, 128)]
    rows = [[k["dtype"], k["channels"], f"{k['eager_ms']:.1f}", f"{k['compiled_ms']:.1f}",
             f"{k['compiled_ms'] / k['eager_ms']:.1f}x"] for k in kernels]
    print(format_table(["BN + ReLU fwd+bwd", "channels", "eager ms", "compiled ms", "compiled / eager"], rows))
    write_results(args.json, {"batch": 256, "size": 32, "results": results, "bn_relu_kernels": kernels})


if __name__ == "__main__":
    main()

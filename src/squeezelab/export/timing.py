"""Honest CPU timing: interleaved repetitions, warm-up, no sleeping, the machine's load on record.

Candidates are timed round-robin in short blocks (AAAA BBBB CCCC AAAA ...)
so a change in the machine's load hits all of them alike; the start of each
round rotates so no candidate always runs right after the same neighbour. The
first call of each block is not timed: it absorbs what the previous candidate
left behind (ONNX Runtime's spinning threads, cold caches, sleeping worker
threads) and the timed calls see each runtime in its steady back-to-back state,
the way a serving loop runs it. Nothing sleeps between calls: on a VM an idle
pause lets the cores clock down and the next call pays for it. The roofline is
the best fp32 matrix multiply rate ``torch.mm`` reaches with the same thread
count (2 * n^3 FLOPs per n x n product).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from ..cpu import cpu_flags, cpu_model_name

#: Environment variables that cap PyTorch's CPU kernels (docs/training.md, "Portability"): part of a record.
KERNEL_CAPS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")

#: Timed calls per candidate per round, and untimed calls before them (see the module docstring).
BLOCK, SETTLE = 4, 1


def rounds_for(min_calls: int) -> int:
    """Rounds of :data:`BLOCK` timed calls that give at least ``min_calls`` calls (and at least 3 rounds)."""
    return max(3, -(-min_calls // BLOCK))


@dataclass
class Timing:
    """Seconds per call of one candidate."""

    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p90(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]


def interleaved(calls: Mapping[str, Callable[[], Any]], reps: int = 20, warmup: int = 2,
                max_seconds: float = float("inf"), block: int = BLOCK, settle: int = SETTLE) -> dict[str, Timing]:
    """Time every call in ``reps`` round-robin rounds, after ``warmup`` untimed rounds.

    In each round every candidate runs ``settle`` untimed calls and then ``block``
    timed ones. Stops early (after at least 3 rounds) once ``max_seconds`` of
    timed work have passed.
    """
    names = list(calls)
    for _ in range(warmup):
        for name in names:
            calls[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    spent = 0.0
    for rep in range(reps):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for name in order:
            for _ in range(settle):
                calls[name]()
            for _ in range(block):
                start = time.perf_counter()
                calls[name]()
                elapsed = time.perf_counter() - start
                samples[name].append(elapsed)
                spent += elapsed
        if rep >= 2 and spent > max_seconds:
            break
    return {name: Timing(values) for name, values in samples.items()}


def sgemm_gflops(threads: int | None = None, n: int = 1024, reps: int = 10, dtype: torch.dtype = torch.float32) -> float:
    """Best ``torch.mm`` rate (GFLOP/s) of this machine with ``threads`` threads: fp32 by default, ``dtype=
    torch.bfloat16`` for the BF16 GEMM rate (the practical FMA peak with native BF16 dot products)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        out = torch.empty(n, n, dtype=dtype)
        torch.mm(a, b, out=out)
        best = float("inf")
        for _ in range(reps):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return 2 * n ** 3 / best / 1e9


def _busy_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (``/proc/stat``), or None off Linux."""
    try:
        with open("/proc/stat", encoding="utf-8") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU seconds of this process and of its children that have been waited for."""
    times = os.times()
    return time.process_time() + times.children_user + times.children_system


class OtherLoad:
    """How busy *other* processes kept the CPU while a block ran, in cores.

    The load average cannot say this: a benchmark's own threads count in it.
    Use as ``with OtherLoad() as other: ...`` and read ``other.cores`` afterwards
    (0 on an idle machine, 2 when two other processes kept both cores busy; None off Linux).
    The benchmark's own child processes (waited for) count as its own, not as other load.
    """

    def __enter__(self) -> "OtherLoad":
        self._busy, self._own, self._wall = _busy_seconds(), _own_seconds(), time.perf_counter()
        self.cores: float | None = None
        return self

    def __exit__(self, *exc: object) -> None:
        busy = _busy_seconds()
        if busy is None or self._busy is None:
            return
        other = (busy - self._busy) - (_own_seconds() - self._own)
        self.cores = max(0.0, other / max(time.perf_counter() - self._wall, 1e-9))


def machine_info() -> dict[str, Any]:
    """CPU, its INT8/BF16 flags, core count, kernel caps, load average, threads and library versions,
    for every benchmark record (ONNX Runtime's version is None where it is not installed)."""
    return {
        "cpu": cpu_model_name() or platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "kernel_caps": {name: os.environ[name] for name in KERNEL_CAPS if name in os.environ},
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "onnxruntime": _version("onnxruntime"),
        "python": platform.python_version(),
    }


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None

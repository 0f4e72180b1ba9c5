"""``squeezelab bench``: latency, throughput and roofline of each inference path, measured in one run.

Backends (all on one model with the same weights, checked against the zoo's
eager model before timing):

``torchvision``  torchvision's eager model (NCHW), for squeezenet1_0 / 1_1 with torchvision's layer geometry
                 only (not the small-input stem of the CIFAR-10 checkpoints, not a bypass): the reference.
``zoo``          the zoo model as built, eager NCHW (the reference for architectures torchvision lacks).
``eager``        :func:`~squeezelab.optimize` with ``backend="eager"``: BN folded, channels_last.
``onnxruntime``  :func:`~squeezelab.optimize` with ``backend="onnxruntime"`` (ORT's default
                 spinning threads; the untimed first call of each timing block keeps
                 their spinning from slowing the next backend, :mod:`squeezelab.export.timing`).
``compile``      :func:`~squeezelab.optimize` with ``backend="compile"`` (minutes to compile).

GFLOP/s counts 2 FLOPs per multiply-accumulate of :func:`~squeezelab.analysis.count_macs`.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional, Sequence

import torch
import torchvision
from torch import nn

from ..analysis import count_macs
from ..cpu import available_memory
from ..errors import SqueezelabError
from ..export.formats import FP32_TOLERANCE, max_error
from ..export.timing import interleaved, rounds_for
from ..models import ClassifierModel
from ..models.tracing import BLOCK, trace
from ..weights.checkpoint import pretrained_cfg_of
from .optimize import optimize

BENCH_BACKENDS = ("torchvision", "zoo", "eager", "onnxruntime", "compile")
DEFAULT_BACKENDS = ("torchvision", "zoo", "eager", "onnxruntime")
TORCHVISION_ARCHS = ("squeezenet1_0", "squeezenet1_1")


@dataclass
class BenchRow:
    """One (model, batch, backend) measurement."""

    model: str
    batch: int
    backend: str
    median_ms: float
    p90_ms: float
    ms_per_image: float
    images_per_s: float
    gflops: float
    roofline_fraction: float
    speedup_vs_reference: float
    reference: str
    error: float
    reps: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _geometry(model: nn.Module) -> list[tuple[Any, ...]]:
    """Kernel, stride, padding (and pooling's ceil mode) of every conv and max-pool, in order."""
    return [(type(m).__name__, m.kernel_size, m.stride, m.padding, getattr(m, "ceil_mode", None))
            for m in model.modules() if isinstance(m, (nn.Conv2d, nn.MaxPool2d))]


def torchvision_model(model: nn.Module) -> Optional[nn.Module]:
    """torchvision's model of the same architecture with ``model``'s weights, or None if torchvision lacks it.

    Lacking it includes a zoo variant torchvision's class cannot express: the small-input stem of the
    CIFAR-10 checkpoints (same weight shapes, stride 1), a bypass, a padded conv10, another input depth.
    """
    cfg = pretrained_cfg_of(model)
    if cfg.architecture not in TORCHVISION_ARCHS or cfg.model_kwargs.get("conv10_padding", 0) or cfg.in_chans != 3:
        return None
    tv = getattr(torchvision.models, cfg.architecture)(num_classes=cfg.num_classes)
    if _geometry(tv) != _geometry(model):
        return None
    try:
        tv.load_state_dict(model.state_dict(), strict=True)  # the zoo uses torchvision's keys
    except RuntimeError:
        return None
    return tv.eval()


def bench_memory_bytes(model: nn.Module, batch: int, input_size: int) -> int:
    """A lower bound on the bytes one timed call needs: the float32 input and the two widest activations of
    ``batch`` images (from the layer trace: shapes only, nothing allocated)."""
    in_chans = pretrained_cfg_of(model).in_chans
    widest = max((layer.elements for layer in trace(model, input_size) if layer.module and layer.kind != BLOCK),
                 default=0)
    return 4 * batch * (in_chans * input_size * input_size + 2 * widest)


def check_bench_memory(model: nn.Module, batch: int, input_size: int) -> None:
    """A one-line error, before anything is allocated, when ``batch`` images of ``input_size`` px cannot fit."""
    need, free = bench_memory_bytes(model, batch, input_size), available_memory()
    if need > free:
        name = pretrained_cfg_of(model).architecture
        raise SqueezelabError(f"{name} at batch {batch} and {input_size}x{input_size} px needs at least "
                              f"{need / 2**30:,.1f} GiB for its input and activations but {free / 2**30:.1f} GiB are "
                              f"free; lower --batch or --input-size")


def _runners(model: nn.Module, backends: Sequence[str], example: torch.Tensor, threads: int
             ) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    runners: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
    for backend in backends:
        if backend == "torchvision":
            tv = torchvision_model(model)
            if tv is not None:
                runners[backend] = tv
        elif backend == "zoo":
            runners[backend] = copy.deepcopy(model).eval()
        elif backend in ("eager", "onnxruntime", "compile"):
            runners[backend] = optimize(model, example, backend=backend, threads=threads)
        else:
            raise SqueezelabError(f"unknown bench backend {backend!r}; choose from {', '.join(BENCH_BACKENDS)}")
    return runners


def bench_model(model: nn.Module, batch: int, backends: Sequence[str] = DEFAULT_BACKENDS, input_size: int = 224,
                threads: Optional[int] = None, reps: int = 30, max_seconds: float = 30.0, warmup: int = 3,
                sgemm: Optional[float] = None) -> list[BenchRow]:
    """Time ``backends`` on ``model`` at ``batch`` x ``input_size``^2, interleaved; one row per backend.

    ``reps`` is the least number of timed calls per backend, taken in rounds of
    :data:`~squeezelab.export.timing.BLOCK` (at least three rounds). Only ``backends`` are timed;
    ``torchvision`` is left out (one note) where torchvision has no model of this geometry (the
    CIFAR-10 checkpoints' small-input stem, a bypass). The reference for ``speedup_vs_reference`` is
    the first of ``torchvision``, ``zoo`` that is timed, else the first backend timed.
    """
    model = model.eval()
    threads = threads or torch.get_num_threads()
    cfg = pretrained_cfg_of(model)
    name = cfg.architecture
    check_bench_memory(model, batch, input_size)
    x = torch.randn(batch, cfg.in_chans, input_size, input_size, generator=torch.Generator().manual_seed(0))
    if isinstance(model, ClassifierModel):
        model.check_input(x)
    wanted = list(dict.fromkeys(backends))
    if "torchvision" in wanted and torchvision_model(model) is None:
        if wanted == ["torchvision"]:
            raise SqueezelabError(f"torchvision has no model of {name} with this layer geometry (a small-input "
                                  f"stem, a bypass); time it with --backends zoo,eager")
        wanted.remove("torchvision")
        print(f"squeezelab: note: {name}: backend torchvision skipped: torchvision has no model of this "
              f"architecture and layer geometry", file=sys.stderr, flush=True)
    reference_name = next((b for b in ("torchvision", "zoo") if b in wanted), wanted[0])
    runners = _runners(model, wanted, x, threads)
    with torch.inference_mode():
        expected = model(x)
        errors = {n: max_error(r(x), expected) for n, r in runners.items()}
    bad = {n: e for n, e in errors.items() if e > FP32_TOLERANCE}
    if bad:
        raise SqueezelabError(f"{name}: backends {', '.join(bad)} differ from eager by more than "
                              f"{FP32_TOLERANCE:.0e} ({', '.join(f'{e:.1e}' for e in bad.values())}); not timing them")
    with torch.inference_mode():
        times = interleaved({n: (lambda r=r: r(x)) for n, r in runners.items()}, reps=rounds_for(reps),
                            warmup=warmup, max_seconds=max_seconds)
    flops = 2.0 * count_macs(model, input_size) * batch
    reference_median = times[reference_name].median
    rows = []
    for backend, timing in times.items():
        median = timing.median
        gflops = flops / median / 1e9
        rows.append(BenchRow(
            model=name, batch=batch, backend=backend, median_ms=median * 1e3, p90_ms=timing.p90 * 1e3,
            ms_per_image=median * 1e3 / batch, images_per_s=batch / median, gflops=gflops,
            roofline_fraction=gflops / sgemm if sgemm else float("nan"),
            speedup_vs_reference=reference_median / median, reference=reference_name, error=errors[backend],
            reps=len(timing.samples)))
    return rows


def bench_table_rows(rows: Sequence[BenchRow]) -> list[list[Any]]:
    """Table cells; the fastest non-reference backend of each (model, batch) is marked with '*'."""
    best: dict[tuple[str, int], str] = {}
    for row in rows:
        key = (row.model, row.batch)
        if row.backend != row.reference and (key not in best or row.median_ms < next(
                r.median_ms for r in rows if (r.model, r.batch, r.backend) == (*key, best[key]))):
            best[key] = row.backend
    cells = []
    for r in rows:
        mark = "*" if best.get((r.model, r.batch)) == r.backend else ""
        cells.append([r.model, r.batch, r.backend + mark, round(r.median_ms, 2), round(r.p90_ms, 2),
                      round(r.ms_per_image, 2), round(r.images_per_s, 1), round(r.gflops, 1),
                      f"{100 * r.roofline_fraction:.0f}%", f"{r.speedup_vs_reference:.2f}x vs {r.reference}"])
    return cells


BENCH_HEADERS = ["model", "batch", "backend", "median ms", "p90 ms", "ms/img", "img/s", "GFLOP/s", "of sgemm",
                 "speedup"]

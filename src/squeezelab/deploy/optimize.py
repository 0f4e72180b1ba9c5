"""``squeezelab.optimize``: the fastest numerically-checked inference path for this machine.

Every candidate starts from the same prepared model: a copy in eval mode with
BatchNorm folded into the convolutions (:mod:`squeezelab.export.fold`) and channels_last
weights and inputs (oneDNN's direct convolutions for NHWC avoid the im2col
copies of NCHW; torchvision eager squeezenet1_0 at batch 1 drops from 37 to
19 ms on the reference 2-core machine, issue 8). Candidates:

``eager``        the prepared model under ``torch.inference_mode``.
``onnxruntime``  the model exported to ONNX (in memory) and run by ONNX Runtime
                 (:class:`squeezelab.export.runtime.OnnxRuntimeModule`), its worker threads spinning
                 between calls unless ``spinning=False``: ORT's own default, and worth
                 35% of squeezenet1_1's batch-1 latency on 2 cores (docs/inference.md).
``compile``      ``torch.compile`` (Inductor, freezing on) of the prepared model.
``int8``         ``squeezelab.compress.int8`` (ONNX Runtime QDQ, calibrated on the images in
                 ``calibration``); ``auto`` tries it only with ``allow_int8=True`` because it
                 changes the logits by design. Instead of the 1e-4 bound it must agree with the
                 fp32 model's top-1 class on at least :data:`INT8_MIN_AGREEMENT` percent of the
                 images in ``validation`` (default: the calibration images) on which fp32 is decisive
                 (:data:`INT8_DECISIVE_MARGIN`), or it is rejected.

``backend="auto"`` builds the candidates in ``candidates`` (default eager and
onnxruntime, plus int8 when allowed), rejects any whose logits differ from the
eager model by more than ``1e-4`` (relative to the logit scale, see
:func:`squeezelab.export.formats.max_error`), times the rest in interleaved blocks on
``example_input`` (:func:`squeezelab.export.timing.interleaved`) and keeps the fastest.
``compile`` is left out of the default list because Inductor needed 150 s to
compile squeezenet1_0 on the 2-core machine and was not faster than ONNX Runtime
there (docs/inference.md); ask for it by name.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from ..compress.fidelity import compare
from ..compress.int8 import CALIBRATION_HINT, quantize_int8
from ..data.sources import folder_images
from ..errors import SqueezelabError
from ..export.fold import fold_batchnorm
from ..export.formats import FP32_TOLERANCE, max_error
from ..export.onnx import onnx_bytes
from ..export.runtime import OnnxRuntimeModule
from ..export.timing import interleaved
from ..io import PathLike
from ..models import ClassifierModel
from ..weights.checkpoint import CheckpointMeta, pretrained_cfg_of

BACKENDS = ("eager", "onnxruntime", "compile", "int8")
AUTO_CANDIDATES = ("eager", "onnxruntime")
#: Least top-1 agreement (percent) of ``int8`` with the fp32 model on the check images (issue 16).
INT8_MIN_AGREEMENT = 98.0
#: Most images the INT8 agreement check reads from the ``validation`` folder.
INT8_CHECK_IMAGES = 64
#: The agreement check counts only images on which fp32 is decisive: its top-1 softmax probability leads the
#: runner-up by at least this much. Near-ties flip under any rounding without costing accuracy: each of the 5
#: top-1 changes of squeezenet1_1.caffe's INT8 on its 64 photo calibration crops had a lead under 0.05, and on
#: none of the 48 crops with a larger lead did the answer change (docs/compression.md).
INT8_DECISIVE_MARGIN = 0.05


@dataclass
class Candidate:
    """One backend tried by :func:`optimize`."""

    backend: str
    error: Optional[float] = None
    median_ms: Optional[float] = None
    rejected: str = ""
    agreement: Optional[float] = None


@dataclass
class OptimizeReport:
    """How :func:`optimize` decided: every candidate's error and time."""

    chosen: str
    candidates: list[Candidate] = field(default_factory=list)
    folded_batchnorms: int = 0

    def summary(self) -> str:
        parts = []
        for c in self.candidates:
            if c.rejected:
                parts.append(f"{c.backend}: rejected ({c.rejected})")
            else:
                timing = f"{c.median_ms:.2f} ms" if c.median_ms is not None else "not timed"
                agreement = f", agreement {c.agreement:.1f}%" if c.agreement is not None else ""
                parts.append(f"{c.backend}: {timing}, error {c.error:.1e}{agreement}")
        return f"chose {self.chosen} ({'; '.join(parts)}); {self.folded_batchnorms} BatchNorms folded"


class OptimizedModel(nn.Module):
    """An inference-only module: input check, channels_last input, ``torch.inference_mode``.

    Attributes: ``backend`` (the path in use), ``report`` (:class:`OptimizeReport`), ``pretrained_cfg``
    (the source model's, so ``predict`` and ``evaluate`` run it as they run the model; None for an ONNX
    file exported without one, whose runner checks its input against the graph's shape instead).
    """

    def __init__(self, runner: Callable[[torch.Tensor], torch.Tensor], backend: str, report: OptimizeReport,
                 cfg: Optional[CheckpointMeta], min_input_size: int, channels_last: bool) -> None:
        super().__init__()
        self.runner = runner
        self.backend = backend
        self.report = report
        self.pretrained_cfg = cfg
        self.in_chans = None if cfg is None else cfg.in_chans
        self.min_input_size = min_input_size
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_chans is not None:
            ClassifierModel.check_input(self, x)  # same one-line errors as the eager model
        with torch.inference_mode():
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return self.runner(x)

    def extra_repr(self) -> str:
        return f"backend={self.backend!r}"


def _default_input(model: nn.Module, cfg: CheckpointMeta) -> torch.Tensor:
    """One random image at the size of the model's pretrained config (at least its minimum)."""
    size = max(cfg.input_size, model.min_input_size if isinstance(model, ClassifierModel) else 1)
    return torch.randn(1, cfg.in_chans, size, size, generator=torch.Generator().manual_seed(0))


def _at_size(cfg: CheckpointMeta, size: int) -> CheckpointMeta:
    """``cfg`` with its preprocessing scaled to ``size`` pixels (same channel order, values, resize filter)."""
    preprocess = cfg.require_preprocess("INT8 calibration")
    if preprocess.crop == size:
        return cfg
    resize = max(size, round(size * preprocess.resize / preprocess.crop))
    return replace(cfg, preprocess=replace(preprocess, crop=size, resize=resize))


def _build_int8(model: nn.Module, example: torch.Tensor, calibration: Optional[PathLike], threads: Optional[int],
                spinning: bool) -> nn.Module:
    """ONNX Runtime INT8 (QDQ) via ``squeezelab.compress.int8``, calibrated on the images in ``calibration``
    preprocessed as the model's ``pretrained_cfg`` says, at ``example``'s size."""
    if calibration is None:
        raise SqueezelabError("INT8 needs calibration images: pass calibration=FOLDER (a few dozen typical images)")
    source = copy.deepcopy(model).eval()
    source.pretrained_cfg = _at_size(pretrained_cfg_of(model), example.shape[-1])
    with tempfile.TemporaryDirectory(prefix="squeezelab-optimize-") as tmp:
        path = quantize_int8(source, Path(tmp) / "int8.onnx", calibration)
        return OnnxRuntimeModule(path.read_bytes(), threads=threads, spinning=spinning)


def int8_agreement(reference: nn.Module, candidate: Callable[[torch.Tensor], torch.Tensor], folder: PathLike,
                   example: torch.Tensor) -> tuple[float, int]:
    """(top-1 agreement in percent, images counted) of ``candidate`` with ``reference`` on the images, of up to
    :data:`INT8_CHECK_IMAGES` of ``folder`` (evenly spaced), on which the reference is decisive
    (:data:`INT8_DECISIVE_MARGIN`; all of them if it is decisive on none), preprocessed as the reference's
    ``pretrained_cfg`` says, at ``example``'s size."""
    preprocess = _at_size(pretrained_cfg_of(reference), example.shape[-1]).require_preprocess("the INT8 check")
    images = folder_images(folder, what="validation image", purpose=CALIBRATION_HINT).subset(INT8_CHECK_IMAGES)
    batch = images.batches(preprocess, INT8_CHECK_IMAGES).tensors()
    with torch.inference_mode():
        expected, got = reference(batch), candidate(batch)
    top2 = expected.softmax(dim=1).topk(min(2, expected.shape[1]), dim=1).values
    decisive = top2[:, 0] - top2[:, -1] >= INT8_DECISIVE_MARGIN
    if not decisive.any():
        decisive = torch.ones_like(decisive)
    return compare(expected[decisive], got[decisive]).agreement, int(decisive.sum())


def _build(backend: str, prepared: nn.Module, model: nn.Module, example: torch.Tensor, threads: Optional[int],
           calibration: Optional[PathLike], spinning: bool) -> tuple[Callable[[torch.Tensor], torch.Tensor], bool]:
    """(runner, wants channels_last input) for one backend."""
    if backend == "eager":
        return prepared, True
    if backend == "onnxruntime":
        data = onnx_bytes(prepared, input_size=example.shape[-1], dynamic_batch=True)
        return OnnxRuntimeModule(data, threads=threads, spinning=spinning), False
    if backend == "compile":
        return torch.compile(prepared, options={"freezing": True}), True
    if backend == "int8":
        return _build_int8(model, example, calibration, threads, spinning), False
    raise SqueezelabError(f"unknown backend {backend!r}; choose auto or one of {', '.join(BACKENDS)}")


def optimize(model: nn.Module, example_input: Optional[torch.Tensor] = None, backend: str = "auto", *,
             candidates: Sequence[str] = AUTO_CANDIDATES, allow_int8: bool = False,
             calibration: Optional[PathLike] = None, validation: Optional[PathLike] = None,
             threads: Optional[int] = None, spinning: bool = True, reps: int = 5) -> OptimizedModel:
    """Return a fast inference module with the same outputs as ``model``.

    Args:
        model: a model from :func:`squeezelab.build_model` (or any fx-traceable CNN with a
            ``pretrained_cfg``); it is copied, not changed. Its ``pretrained_cfg`` gives the default
            input and INT8's calibration preprocessing (channel order, value scale, mean/std).
        example_input: the batch shape to check and time with (default: one image at
            the config's input size). Inputs of other batch sizes work too.
        backend: ``"auto"`` (fastest checked candidate) or one of :data:`BACKENDS`.
        candidates: the backends ``auto`` tries (default eager and onnxruntime).
        allow_int8: let ``auto`` also try INT8, whose logits differ from fp32 by design; it is
            kept only if its top-1 agrees with fp32 on >= 98% of the ``validation`` images on which fp32 is
            decisive (top-1 probability ahead of the runner-up by >= 0.05).
        calibration: a folder of images for INT8 calibration (needed by ``int8``).
        validation: a folder of images for INT8's agreement check (default ``calibration``;
            images the calibration did not see give the more honest check).
        threads: intra-op threads for ONNX Runtime (default ``torch.get_num_threads()``).
        spinning: let ONNX Runtime's idle threads spin between calls (faster back-to-back
            inference; pass False when other CPU work runs between calls).
        reps: interleaved timing rounds for ``auto`` (each times :data:`squeezelab.export.timing.BLOCK` calls).

    Raises:
        SqueezelabError: an unknown backend, or a requested backend that fails to build
            or whose logits differ from eager by more than 1e-4 (INT8: agrees on < 98%).
    """
    if backend != "auto" and backend not in BACKENDS:
        raise SqueezelabError(f"unknown backend {backend!r}; choose auto or one of {', '.join(BACKENDS)}")
    if isinstance(model, OnnxRuntimeModule):  # an exported file (e.g. weights loaded from .onnx): already optimized
        report = OptimizeReport("onnxruntime", [Candidate("onnxruntime", error=0.0)])
        return OptimizedModel(model, "onnxruntime", report, model.__dict__.get("pretrained_cfg", model.meta), 1,
                              False)
    cfg = pretrained_cfg_of(model)
    example = _default_input(model, cfg) if example_input is None else example_input
    if isinstance(model, ClassifierModel):
        model.check_input(example)
    reference_model = copy.deepcopy(model).float().eval()
    with torch.inference_mode():
        reference = reference_model(example)
    prepared = fold_batchnorm(reference_model).to(memory_format=torch.channels_last)
    names = [backend] if backend != "auto" else list(dict.fromkeys([*candidates, *(["int8"] if allow_int8 else [])]))
    tried: list[Candidate] = []
    runners: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], bool]] = {}
    for name in names:
        candidate = Candidate(name)
        tried.append(candidate)
        try:
            runner, wants_cl = _build(name, prepared, model, example, threads, calibration, spinning)
            x = example.contiguous(memory_format=torch.channels_last) if wants_cl else example
            with torch.inference_mode():
                candidate.error = max_error(runner(x), reference)
            if name == "int8":
                candidate.agreement, count = int8_agreement(reference_model, runner, validation or calibration,
                                                            example)
                if candidate.agreement < INT8_MIN_AGREEMENT:
                    raise SqueezelabError(f"INT8 agrees with fp32 on {candidate.agreement:.1f}% of {count} images "
                                          f"where fp32's top-1 leads by >= {INT8_DECISIVE_MARGIN} "
                                          f"(< {INT8_MIN_AGREEMENT:.0f}%); use an fp32 backend")
        except SqueezelabError as exc:
            if backend != "auto":
                raise
            candidate.rejected = str(exc)
            continue
        tolerance = FP32_TOLERANCE if name != "int8" else float("inf")
        if candidate.error > tolerance:
            candidate.rejected = f"error {candidate.error:.1e} > {tolerance:.0e}"
            if backend != "auto":
                raise SqueezelabError(f"the {name} backend changes the logits by {candidate.error:.1e} "
                                      f"(> {tolerance:.0e}); use backend='eager'")
            continue
        runners[name] = (runner, wants_cl)
    if not runners:
        raise SqueezelabError("no backend passed the parity check: " + "; ".join(f"{c.backend}: {c.rejected}"
                                                                                  for c in tried))
    if len(runners) > 1:
        inputs = {n: example.contiguous(memory_format=torch.channels_last) if cl else example
                  for n, (_, cl) in runners.items()}
        with torch.inference_mode():
            times = interleaved({n: (lambda n=n: runners[n][0](inputs[n])) for n in runners}, reps=reps,
                                max_seconds=5.0)
        for candidate in tried:
            if candidate.backend in times:
                candidate.median_ms = times[candidate.backend].median * 1e3
        chosen = min(times, key=lambda n: times[n].median)
    else:
        chosen = next(iter(runners))
    report = OptimizeReport(chosen, tried, prepared.folded_batchnorms)
    runner, wants_cl = runners[chosen]
    return OptimizedModel(runner, chosen, report, cfg,
                          model.min_input_size if isinstance(model, ClassifierModel) else 1, wants_cl)

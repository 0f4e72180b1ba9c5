"""``export_model``: ONNX, TorchScript or pt2 files, each reloaded and checked against eager.

- ``onnx``: :func:`.onnx.export_onnx`, run back in ONNX Runtime.
- ``torchscript``: ``torch.jit.trace`` (the zoo's forward has no data-dependent
  control flow), saved with ``torch.jit.save``; metadata in the extra file
  ``squeezelab.json``.
- ``pt2``: ``torch.export.export`` saved with ``torch.export.save``; a symbolic
  batch dimension when ``dynamic_batch``; metadata in ``squeezelab.json``.

The parity check runs the reloaded file and the eager model on the same random
batch and fails above :data:`FP32_TOLERANCE` (scaled as in :func:`max_error`).
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from ..errors import SqueezelabError
from ..io import PathLike, atomic_write_bytes
from ..weights.checkpoint import CheckpointMeta, pretrained_cfg_of
from .onnx import example_input_for, export_onnx
from .runtime import OnnxRuntimeModule


FORMATS = ("onnx", "torchscript", "pt2")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "pt2": ".pt2"}
META_FILE = "squeezelab.json"
#: fp32 parity bound of issue 8 (max abs logit difference, scaled by max(1, max |logit|)).
FP32_TOLERANCE = 1e-4


def max_error(output: torch.Tensor, reference: torch.Tensor) -> float:
    """Max abs difference divided by max(1, max |reference|).

    Randomly initialised deep models (SqueezeNext-44 without trained BN statistics)
    produce logits of 1e7, where fp32 rounding alone exceeds 1e-4 absolute; for
    logits of order 1 (any trained model) this is the plain max abs difference.
    """
    diff = (output.float() - reference.float()).abs().max().item()
    return diff / max(1.0, reference.abs().max().item())


def _fail(fmt: str, model: nn.Module, exc: BaseException) -> SqueezelabError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    name = pretrained_cfg_of(model).architecture
    others = ", ".join(f for f in FORMATS if f != fmt)
    return SqueezelabError(f"cannot export {name} to {fmt}: {first}; try --format {others.split(', ')[0]}"
                           f" (formats: {others})")


def _meta_json(meta: Optional[CheckpointMeta]) -> dict[str, str]:
    return {META_FILE: json.dumps(meta.to_strings())} if meta is not None else {}


def export_torchscript(model: nn.Module, path: PathLike, input_size: int = 224,
                       meta: Optional[CheckpointMeta] = None) -> Path:
    """Trace ``model`` at ``input_size`` and save it as TorchScript (atomically)."""
    model = copy.deepcopy(model).float().eval()
    example = example_input_for(model, input_size)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings from the shape check; shapes are fixed per file
            traced = torch.jit.trace(model, (example,), check_trace=False)
    except Exception as exc:
        raise _fail("torchscript", model, exc) from None
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.save is deprecated": still the TorchScript format
        torch.jit.save(traced, buffer, _extra_files=_meta_json(meta))
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def export_pt2(model: nn.Module, path: PathLike, input_size: int = 224, dynamic_batch: bool = True,
               meta: Optional[CheckpointMeta] = None) -> Path:
    """``torch.export`` ``model`` and save the ExportedProgram (atomically)."""
    model = copy.deepcopy(model).float().eval()
    example = example_input_for(model, input_size, batch=2 if dynamic_batch else 1)
    shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(model, (example,), dynamic_shapes=shapes)
    except Exception as exc:
        raise _fail("pt2", model, exc) from None
    buffer = io.BytesIO()  # torch.export.save wants a '.pt2' name or a buffer; atomic_path's temp name is neither
    torch.export.save(program, buffer, extra_files=_meta_json(meta))
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def export_model(model: nn.Module, path: PathLike, fmt: str, input_size: int = 224, dynamic_batch: bool = True,
                 meta: Optional[CheckpointMeta] = None) -> Path:
    """Export ``model`` to ``path`` in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "onnx":
        return export_onnx(model, path, input_size=input_size, dynamic_batch=dynamic_batch, meta=meta)
    if fmt == "torchscript":
        return export_torchscript(model, path, input_size=input_size, meta=meta)
    if fmt == "pt2":
        return export_pt2(model, path, input_size=input_size, dynamic_batch=dynamic_batch, meta=meta)
    raise SqueezelabError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


def load_exported(path: PathLike, fmt: str, threads: Optional[int] = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """Reload an exported file as a callable (ONNX Runtime, TorchScript or the pt2 program's module)."""
    if fmt == "onnx":
        return OnnxRuntimeModule(path, threads=threads)
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path)).eval()
    if fmt == "pt2":  # from a buffer: torch.export.load warns about file names not ending in .pt2
        return torch.export.load(io.BytesIO(Path(path).read_bytes())).module()
    raise SqueezelabError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


def check_parity(model: nn.Module, path: PathLike, fmt: str, input_size: int, batch: int = 2,
                 tolerance: float = FP32_TOLERANCE) -> float:
    """Max error (scaled, see :func:`max_error`) of the exported file against eager on a random batch.

    Raises:
        SqueezelabError: above ``tolerance`` or NaN.
    """
    exported = load_exported(path, fmt)
    x = example_input_for(model, input_size, batch=batch)
    with torch.inference_mode():
        reference = copy.deepcopy(model).float().eval()(x)
        error = max_error(exported(x), reference)
    if not error <= tolerance:  # also catches NaN, which compares False with everything
        raise SqueezelabError(f"{path}: the {fmt} model's logits differ from eager by {error:.2e} (> {tolerance:.0e})"
                              "; the export is wrong, please report it with the model name")
    return error

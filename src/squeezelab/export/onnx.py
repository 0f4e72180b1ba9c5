"""ONNX export through the TorchScript-tracing exporter, checked in ONNX Runtime.

``torch.onnx.export(..., dynamo=False)`` traces the model once at a fixed
input; for the SqueezeNet family (static control flow, ceil-mode max-pools,
SqueezeNext's separable 3x1/1x3 convs) the traced graph is exact, and it is
6-10x faster than the dynamo exporter on this project's 2-core machines
(squeezenet1_0: 3.4 s vs 19 s, measured; see docs/export.md). Ceil-mode pools
export as ``MaxPool(ceil_mode=1)``, supported by ONNX Runtime since opset 10.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import io
import os
import sys
import warnings
from pathlib import Path
from typing import Iterator, Optional

import torch
from torch import nn

from ..errors import SqueezelabError
from ..extras import require
from ..io import PathLike, atomic_write_bytes
from ..models import ClassifierModel
from ..weights.checkpoint import CheckpointMeta, pretrained_cfg_of

#: Opset 17: every op the zoo uses, and ONNX Runtime >= 1.13 runs it.
OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def example_input_for(model: nn.Module, input_size: int, batch: int = 1) -> torch.Tensor:
    """A random (batch, C, S, S) tensor with the channels of ``model.pretrained_cfg``, with a clear error when
    ``input_size`` is too small for a zoo model."""
    cfg = pretrained_cfg_of(model)
    if input_size < 1:
        raise SqueezelabError(f"--input-size must be positive, got {input_size}")
    if isinstance(model, ClassifierModel) and input_size < model.min_input_size:
        raise SqueezelabError(f"input size {input_size} is below {cfg.architecture}'s minimum {model.min_input_size}; "
                              f"use --input-size {model.min_input_size} or more")
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, cfg.in_chans, input_size, input_size, generator=generator)


@contextlib.contextmanager
def _silent_native_output() -> Iterator[None]:
    """Discard what C++ code prints on fds 1 and 2 (the exporter dumps the whole graph when an op is unsupported)."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "wb") as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                libc.fflush(None)
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def onnx_bytes(model: nn.Module, input_size: int = 224, dynamic_batch: bool = True,
               meta: Optional[CheckpointMeta] = None) -> bytes:
    """Serialize ``model`` (in eval mode, fp32) as an ONNX model; see :func:`export_onnx`."""
    onnx = require("onnx", "ONNX export")

    example = example_input_for(model, input_size)  # before the copy: deepcopy drops a GraphModule's attributes
    name = pretrained_cfg_of(model).architecture
    model = copy.deepcopy(model).float().eval()
    buffer = io.BytesIO()
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    try:
        with warnings.catch_warnings(), torch.no_grad(), _silent_native_output():
            warnings.simplefilter("ignore")  # TracerWarnings from the shape check in forward(); shapes are fixed
            torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=OPSET, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], dynamic_axes=dynamic_axes, do_constant_folding=True)
    except SqueezelabError:
        raise
    except Exception as exc:  # the exporter raises RuntimeError, UnsupportedOperatorError, TypeError, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SqueezelabError(f"cannot export {name} to ONNX (opset {OPSET}): {first}; export a model built from "
                              "standard layers, or use --format torchscript") from None
    proto = onnx.load_from_string(buffer.getvalue())
    if meta is not None:
        del proto.metadata_props[:]
        for key, value in meta.to_strings().items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
    proto.producer_name = "squeezelab"
    return proto.SerializeToString()


def export_onnx(model: nn.Module, path: PathLike, input_size: int = 224, dynamic_batch: bool = True,
                meta: Optional[CheckpointMeta] = None) -> Path:
    """Export ``model`` to an ONNX file at ``path`` (written atomically) and return the path.

    Args:
        model: any zoo model (or an ``nn.Module`` built from standard layers).
        path: destination ``.onnx`` file.
        input_size: side of the square example input the graph is traced at; the
            spatial size is fixed in the graph.
        dynamic_batch: leave the batch dimension symbolic (``"batch"``).
        meta: a :class:`~squeezelab.weights.checkpoint.CheckpointMeta`; its
            ``to_strings()`` go into the model's ``metadata_props`` so the file
            says which architecture, classes and preprocessing it expects.
    """
    data = onnx_bytes(model, input_size=input_size, dynamic_batch=dynamic_batch, meta=meta)
    atomic_write_bytes(path, data)
    return Path(path)

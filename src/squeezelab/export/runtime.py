"""Run an exported ONNX model in ONNX Runtime behind the ``nn.Module`` interface.

Session options follow docs/inference.md: ``threads`` intra-op threads (default
``torch.get_num_threads()``), one inter-op thread, sequential execution.
Spinning (``session.intra_op.allow_spinning``) is off by default: spinning idle
threads keep a core busy after every run and slow whatever runs next in the
process (image decoding in ``predict``, a training step), which on a 2-core
machine is half the machine. Back-to-back inference (serving, ``bench``) wants
it on: waking sleeping workers costs squeezenet1_1 3.5 ms of its 9 ms per image
at batch 1 on the reference 2-core machine (docs/inference.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

import numpy as np
import torch
from torch import nn

from ..errors import InputShapeError, SqueezelabError
from ..extras import require
from ..io import PathLike
from ..weights.checkpoint import FORMAT, CheckpointMeta

if TYPE_CHECKING:
    import onnxruntime


def session_options(threads: Optional[int] = None, spinning: bool = False) -> "onnxruntime.SessionOptions":
    """ONNX Runtime session options with ``threads`` intra-op threads, spinning on or off."""
    ort = require("onnxruntime", "running ONNX models")

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.log_severity_level = 3
    return options


def _parse_meta(props: dict[str, str]) -> Optional[CheckpointMeta]:
    if props.get("format") != FORMAT:
        return None
    try:
        return CheckpointMeta.from_strings(props)
    except (KeyError, ValueError) as exc:
        raise SqueezelabError(f"the ONNX model's squeezelab metadata is malformed ({exc}); re-export it") from None


class OnnxRuntimeModule(nn.Module):
    """An ONNX model run by ONNX Runtime; ``forward`` takes and returns float torch tensors.

    Args:
        path: an ``.onnx`` file, or the serialized model as ``bytes``.
        threads: intra-op threads (default: ``torch.get_num_threads()``).
        spinning: let idle worker threads spin between runs (faster back-to-back calls,
            a busy core in between; see the module docstring).

    Attributes:
        meta: the :class:`~squeezelab.weights.checkpoint.CheckpointMeta` stored in the
            file's metadata by :func:`~squeezelab.export.onnx.export_onnx`, or ``None``.
        input_shape: the graph's input shape (``"batch"`` or an int per dimension).
    """

    def __init__(self, path: Union[PathLike, bytes], threads: Optional[int] = None, spinning: bool = False) -> None:
        super().__init__()
        ort = require("onnxruntime", "running ONNX models")

        if not isinstance(path, bytes):
            if not Path(path).is_file():
                raise SqueezelabError(f"ONNX model {path} does not exist; export one with 'squeezelab export'")
            source: Union[str, bytes] = str(path)
        else:
            source = path
        self.path = None if isinstance(path, bytes) else Path(path)
        self.threads = int(threads or torch.get_num_threads())
        self.spinning = spinning
        try:
            self.session = ort.InferenceSession(source, session_options(self.threads, spinning),
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SqueezelabError(f"ONNX Runtime cannot load {self.path or 'the model'}: {first}") from None
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        self.input_shape = tuple(graph_input.shape)
        self.meta = _parse_meta(dict(self.session.get_modelmeta().custom_metadata_map))

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != len(self.input_shape):
            raise InputShapeError(f"expected a {len(self.input_shape)}-D batch (N, C, H, W), got a {x.dim()}-D tensor; "
                                  "add a batch dimension with x.unsqueeze(0)")
        for axis, (want, got) in enumerate(zip(self.input_shape, x.shape)):
            if isinstance(want, int) and want != got:
                raise InputShapeError(f"the ONNX model expects input shape {list(self.input_shape)}, got "
                                      f"{list(x.shape)} (dimension {axis} differs); "
                                      + ("re-export with --dynamic-batch" if axis == 0 else
                                         "resize the images or re-export with a matching --input-size"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        (logits,) = self.session.run(None, {self.input_name: array})
        return torch.from_numpy(logits)

    def extra_repr(self) -> str:
        return (f"path={self.path}, threads={self.threads}, spinning={self.spinning}, "
                f"input_shape={list(self.input_shape)}")

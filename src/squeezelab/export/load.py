"""Open an exported ONNX file: as a runnable model (:func:`load_onnx`) or as weights (:func:`read_onnx_weights`).

``squeezelab.weights.build_model`` / ``load_weights`` reach these through their
format table (``squeezelab.weights.loader.WEIGHTS_LOADERS``), which names them
as strings, so the core never imports this stage. ``squeezelab.create_model``
refuses ONNX files: an ONNX graph has no classifier to reset or train.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import SqueezelabError
from ..extras import require
from ..io import PathLike
from ..weights.checkpoint import CheckpointMeta
from .runtime import OnnxRuntimeModule


def onnx_meta(path: PathLike) -> CheckpointMeta:
    """The squeezelab metadata (architecture, preprocessing, classes) stored in an ONNX file by ``export``."""
    onnx = require("onnx", "reading ONNX files")
    proto = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in proto.metadata_props}
    if "architecture" not in props:
        raise SqueezelabError(f"{path} has no squeezelab metadata (architecture, preprocess); export it with "
                              f"'squeezelab export' or load the checkpoint it came from")
    return CheckpointMeta.from_strings(props)


def read_onnx_weights(path: PathLike) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    """The ONNX file's initializers as a state dict, and its metadata."""
    onnx = require("onnx", "reading ONNX files")
    numpy_helper = require("onnx.numpy_helper", "reading ONNX files")
    proto = onnx.load(str(path))
    state = {init.name: torch.from_numpy(np.array(numpy_helper.to_array(init))) for init in proto.graph.initializer}
    return state, onnx_meta(path)


def load_onnx(path: PathLike, threads: Optional[int] = None) -> tuple[OnnxRuntimeModule, CheckpointMeta]:
    """An ONNX file as an ONNX Runtime module (eval mode) and its metadata, for inference."""
    meta = onnx_meta(Path(path))
    return OnnxRuntimeModule(path, threads=threads).eval(), meta

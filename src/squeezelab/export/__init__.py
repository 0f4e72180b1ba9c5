"""Export: ONNX / TorchScript / pt2 files with a parity check, ONNX Runtime inference, BatchNorm folding, timing."""

from .fold import fold_batchnorm
from .load import load_onnx, read_onnx_weights
from .onnx import export_onnx
from .runtime import OnnxRuntimeModule

__all__ = ["OnnxRuntimeModule", "export_onnx", "fold_batchnorm", "load_onnx", "read_onnx_weights"]

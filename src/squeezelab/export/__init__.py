"""Deployment: ONNX / TorchScript / pt2 export, ONNX Runtime inference, ``optimize`` and benchmarking."""

from .fold import fold_batchnorm
from .load import load_onnx, read_onnx_weights
from .onnx import export_onnx
from .optimize import OptimizedModel, optimize
from .runtime import OnnxRuntimeModule

__all__ = ["OnnxRuntimeModule", "OptimizedModel", "export_onnx", "fold_batchnorm", "load_onnx", "optimize",
           "read_onnx_weights"]

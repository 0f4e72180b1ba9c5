"""Deployment: ONNX / TorchScript / pt2 export, ONNX Runtime inference, ``optimize`` and benchmarking."""

from .fold import fold_batchnorm
from .onnx import export_onnx
from .optimize import OptimizedModel, optimize
from .runtime import OnnxRuntimeModule

__all__ = ["OnnxRuntimeModule", "OptimizedModel", "export_onnx", "fold_batchnorm", "optimize"]

"""Deployment: ``optimize`` (the fastest faithful inference path) and ``squeezelab bench``.

A stage above ``compress`` and ``export``: ``optimize`` chooses among ONNX Runtime
(``export``) and INT8 with its top-1 agreement check (``compress``, whose INT8 model
is itself an ONNX export), so ``compress`` imports ``export`` and ``export`` imports neither.
"""

from .optimize import OptimizedModel, optimize

__all__ = ["OptimizedModel", "optimize"]

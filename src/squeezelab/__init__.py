"""squeezelab: the SqueezeNet family, faithful, trained, compressed, simulated and deployed.

The public API lives here; each pipeline stage is a subpackage (models, weights,
data, train, analysis, compress, hwsim, export, deploy, inference, cli). Importing
``squeezelab`` imports none of them: each name below is resolved on first use
(PEP 562 ``__getattr__``), so ``import squeezelab`` and ``squeezelab --help``
stay light (docs/architecture.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import SqueezelabError

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_API = {
    "build_model": "squeezelab.weights",
    "create_model": "squeezelab.weights",
    "get_model_entry": "squeezelab.models",
    "list_models": "squeezelab.models",
    "load_onnx": "squeezelab.export",
    "optimize": "squeezelab.deploy",
    "evaluate": "squeezelab.inference",
    "predict": "squeezelab.inference",
    "profile": "squeezelab.analysis",
    "simulate": "squeezelab.hwsim",
    "train": "squeezelab.train",
}

__all__ = ["SqueezelabError", "__version__", *sorted(_API)]
#: Subpackages, imported on first attribute access (``squeezelab.weights.load_weights`` after ``import squeezelab``).
_SUBPACKAGES = frozenset({"analysis", "cli", "compress", "data", "deploy", "export", "hwsim", "inference", "models",
                          "train", "weights"})

if TYPE_CHECKING:
    from .analysis import profile
    from .deploy import optimize
    from .export import load_onnx
    from .hwsim import simulate
    from .inference import evaluate, predict
    from .models import get_model_entry, list_models
    from .train import train
    from .weights import build_model, create_model


def __getattr__(name: str) -> Any:
    """Import the stage that defines ``name`` (or the subpackage ``name``) on first access."""
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    if name not in _API:
        raise AttributeError(f"module 'squeezelab' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API) | _SUBPACKAGES)

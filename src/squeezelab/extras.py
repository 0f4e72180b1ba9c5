"""Optional dependencies: which ``pip install 'squeezelab[EXTRA]'`` brings each one.

The core (models, weights, format readers) needs only torch, torchvision, numpy,
pillow and safetensors; the stages import their heavier dependencies inside the
function that needs them, through :func:`require`, so a missing one is a
one-line error that names the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import SqueezelabError

#: Top-level module -> the extra (pyproject.toml ``[project.optional-dependencies]``) that installs it.
EXTRAS = {
    "onnx": "deploy",
    "onnxruntime": "deploy",
    "onnxscript": "deploy",
    "matplotlib": "plots",
    "sklearn": "train",
    "tqdm": "train",
    "skimage": "data",
    "yaml": "data",
    "optuna": "search",
}


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (e.g. ``"onnxruntime"`` or ``"matplotlib.figure"``) or fail naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        extra = EXTRAS.get(top, "all")
        raise SqueezelabError(f"{purpose} needs {top}, which is not installed; install it with "
                              f"pip install 'squeezelab[{extra}]'") from None

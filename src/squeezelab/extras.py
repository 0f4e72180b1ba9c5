"""Optional dependencies: which ``pip install 'squeezelab[EXTRA]'`` brings each one.

The core (models, weights, format readers) needs only torch, torchvision, numpy,
pillow and safetensors; the stages import their heavier dependencies inside the
function that needs them, through :func:`require`, so a missing one is a
one-line error that names the extra to install.

The policy (docs/reliability.md, "Optional extras"): a command whose purpose needs
a missing extra is refused before any work (:func:`require` at its start); a figure,
report section or progress bar that is a by-product is skipped with one note
(:func:`available`, :func:`note_missing`), and the work goes on.
"""

from __future__ import annotations

import importlib
import sys
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
#: The notes :func:`note_missing` has printed in this process (each is printed once).
_NOTED: set[str] = set()


class MissingExtra(SqueezelabError):
    """An optional dependency is not installed; the message names the extra that installs it."""

    def __init__(self, module: str, purpose: str) -> None:
        self.module = module.split(".")[0]
        super().__init__(f"{purpose} needs {self.module}, which is not installed; install it with "
                         f"{install_command(self.module)}")


def install_command(module: str) -> str:
    """``pip install 'squeezelab[EXTRA]'`` for ``module``'s extra."""
    return f"pip install 'squeezelab[{EXTRAS.get(module.split('.')[0], 'all')}]'"


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (e.g. ``"onnxruntime"`` or ``"matplotlib.figure"``) or fail naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(module, purpose) from None


def available(module: str) -> bool:
    """Whether ``module`` imports (it is imported, so a broken install counts as missing)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def missing(*modules: str) -> list[str]:
    """The top-level names of ``modules`` that do not import."""
    return [module.split(".")[0] for module in modules if not available(module)]


def note_missing(module: str, skipped: str) -> None:
    """Print ``squeezelab: note: SKIPPED skipped: MODULE is not installed (pip install ...)`` once per process."""
    text = f"{skipped} skipped: {module.split('.')[0]} is not installed ({install_command(module)})"
    if text not in _NOTED:
        _NOTED.add(text)
        print(f"squeezelab: note: {text}", file=sys.stderr, flush=True)

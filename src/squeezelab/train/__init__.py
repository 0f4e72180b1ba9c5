"""Training, fine-tuning and evaluation on real datasets, single process or DDP (``docs/training.md``).

``TrainConfig`` and the recipe's constants (``train.config``) are torch-free and load with the package;
the engine's names are resolved on first use (PEP 562 ``__getattr__``), so ``squeezelab train --help``
shows the recipe's defaults without importing torch (docs/architecture.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import TrainConfig

#: Names of :mod:`.engine`, imported on first access.
_ENGINE = frozenset({"EvalResult", "TrainResult", "evaluate_model", "lr_factor", "train", "train_one_epoch"})

__all__ = ["TrainConfig", *sorted(_ENGINE)]

if TYPE_CHECKING:
    from .engine import EvalResult, TrainResult, evaluate_model, lr_factor, train, train_one_epoch


def __getattr__(name: str) -> Any:
    """Import :mod:`.engine` when one of its names is first used."""
    if name not in _ENGINE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.engine"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | _ENGINE)

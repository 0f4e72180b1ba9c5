"""Training, fine-tuning and evaluation on real datasets, single process or DDP (``docs/training.md``).

``TrainConfig`` and the recipe's constants (``train.config``) are torch-free and load with the package;
the engine's names are resolved on first use (PEP 562 ``__getattr__``), so ``squeezelab train --help``
shows the recipe's defaults without importing torch (docs/architecture.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_names
from .config import TrainConfig

#: Names of :mod:`.engine`, imported on first access.
_ENGINE = frozenset({"EvalResult", "TrainResult", "evaluate_model", "lr_factor", "train", "train_one_epoch"})

__all__ = ["TrainConfig", *sorted(_ENGINE)]

if TYPE_CHECKING:
    from .engine import EvalResult, TrainResult, evaluate_model, lr_factor, train, train_one_epoch

__getattr__, __dir__ = lazy_names(globals(), dict.fromkeys(_ENGINE, f"{__name__}.engine"))

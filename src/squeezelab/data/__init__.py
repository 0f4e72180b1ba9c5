"""Data: preprocessing specs and the training dataset loaders (``docs/training.md``).

The core reads ``data.preprocess`` (every checkpoint records its preprocessing), and Python
runs this ``__init__`` first; so the dataset names are resolved on first use (PEP 562
``__getattr__``), and loading a checkpoint does not import the loaders and torchvision
(docs/architecture.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .preprocess import CAFFE, TORCHVISION, Preprocess

#: Names of :mod:`.datasets`, imported on first access.
_DATASETS = frozenset({"SKIPPED_LABEL", "DatasetBundle", "EpochSampler", "ImageDataset", "build_datasets"})

__all__ = ["CAFFE", "TORCHVISION", "Preprocess", *sorted(_DATASETS)]

if TYPE_CHECKING:
    from .datasets import SKIPPED_LABEL, DatasetBundle, EpochSampler, ImageDataset, build_datasets


def __getattr__(name: str) -> Any:
    """Import :mod:`.datasets` when one of its names is first used."""
    if name not in _DATASETS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.datasets"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | _DATASETS)

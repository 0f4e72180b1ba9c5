"""Data: preprocessing specs and the training dataset loaders (``docs/training.md``).

The core reads ``data.preprocess`` (every checkpoint records its preprocessing) and ``data.imagenet``, and Python
runs this ``__init__`` first; so the dataset names are resolved on first use (PEP 562
``__getattr__``), and loading a checkpoint does not import the loaders and torchvision
(docs/architecture.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_names
from .preprocess import CAFFE, TORCHVISION, Preprocess

#: Names of :mod:`.datasets`, imported on first access.
_DATASETS = frozenset({"SKIPPED_LABEL", "DatasetBundle", "EpochSampler", "ImageDataset", "build_datasets"})

__all__ = ["CAFFE", "TORCHVISION", "Preprocess", *sorted(_DATASETS)]

if TYPE_CHECKING:
    from .datasets import SKIPPED_LABEL, DatasetBundle, EpochSampler, ImageDataset, build_datasets

__getattr__, __dir__ = lazy_names(globals(), dict.fromkeys(_DATASETS, f"{__name__}.datasets"))

"""Data: preprocessing specs and the training dataset loaders (``docs/training.md``)."""

from .datasets import SKIPPED_LABEL, DatasetBundle, EpochSampler, ImageDataset, build_datasets
from .preprocess import CAFFE, TORCHVISION, Preprocess

__all__ = ["CAFFE", "SKIPPED_LABEL", "TORCHVISION", "DatasetBundle", "EpochSampler", "ImageDataset", "Preprocess",
           "build_datasets"]

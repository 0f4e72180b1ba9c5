"""Data: preprocessing specs (and, with the training issue, the dataset loaders)."""

from .preprocess import CAFFE, TORCHVISION, Preprocess

__all__ = ["CAFFE", "TORCHVISION", "Preprocess"]

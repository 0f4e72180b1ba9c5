"""Inference with pretrained or trained weights: top-k prediction and folder evaluation."""

from ..data.preprocess import IMAGE_EXTENSIONS
from .evaluate import evaluate, scan_images
from .predict import ClassScore, open_image, predict

__all__ = ["IMAGE_EXTENSIONS", "ClassScore", "evaluate", "open_image", "predict", "scan_images"]

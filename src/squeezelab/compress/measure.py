"""Accuracy of several variants of one model on the same images, preprocessing them once.

The compression curve evaluates a dozen variants on the same 100 ImageNet
samples; decoding and resizing the JPEGs once makes that cheap. Labels and
preprocessing follow :func:`squeezelab.inference.evaluate` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image
from torch import nn

from ..data.preprocess import read_image
from ..errors import SqueezelabError
from ..evaluation import evaluate_model
from ..extras import require
from ..inference import scan_images
from ..io import PathLike
from ..weights.checkpoint import CheckpointMeta
from .int8 import calibration_images


@dataclass
class ImageSet:
    """Preprocessed images (N, C, H, W) and their class indices (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def load(cls, data_dir: PathLike, meta: CheckpointMeta, limit: int | None = None) -> "ImageSet":
        samples = scan_images(data_dir, meta).samples[:limit]
        if not samples:
            raise SqueezelabError(f"no labelled images in {data_dir}")
        tensors = []
        for path, _ in samples:
            tensors.append(meta.preprocess(read_image(path)))
        return cls(torch.stack(tensors), torch.tensor([label for _, label in samples]))

    def accuracy(self, model: nn.Module, batch_size: int = 50) -> tuple[float, float]:
        """(top-1, top-5) in percent."""
        batches = ((self.images[i:i + batch_size], self.labels[i:i + batch_size])
                   for i in range(0, len(self.labels), batch_size))
        result = evaluate_model(model, batches)
        return result.top1, result.top5


def skimage_photos() -> list[Image.Image]:
    """Natural RGB photos that ship with scikit-image: a calibration set disjoint from any eval folder."""
    skdata = require("skimage.data", "the scikit-image sample photos")

    arrays = [skdata.astronaut(), skdata.chelsea(), skdata.coffee(), skdata.rocket(), *skdata.stereo_motorcycle()[:2]]
    return [Image.fromarray(a) for a in arrays]


def folder_images(folder: PathLike, limit: int = 64) -> list[Image.Image]:
    """Up to ``limit`` images from ``folder`` (recursive, evenly spaced in sorted order), decoded."""
    return [read_image(path, "calibration image").convert("RGB") for path in calibration_images(folder, limit)]

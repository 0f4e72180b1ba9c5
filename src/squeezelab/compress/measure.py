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

from ..errors import SqueezelabError
from ..inference import scan_images
from ..io import PathLike
from ..weights.checkpoint import CheckpointMeta


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
            with Image.open(path) as image:
                tensors.append(meta.preprocess(image))
        return cls(torch.stack(tensors), torch.tensor([label for _, label in samples]))

    @torch.no_grad()
    def accuracy(self, model: nn.Module, batch_size: int = 50) -> tuple[float, float]:
        """(top-1, top-5) in percent."""
        model.eval()
        hit1 = hit5 = 0
        for start in range(0, len(self.labels), batch_size):
            labels = self.labels[start:start + batch_size]
            top = model(self.images[start:start + batch_size]).topk(5, dim=1).indices
            hit1 += int((top[:, 0] == labels).sum())
            hit5 += int((top == labels[:, None]).any(dim=1).sum())
        return 100.0 * hit1 / len(self.labels), 100.0 * hit5 / len(self.labels)


def skimage_photos() -> list[Image.Image]:
    """Natural RGB photos that ship with scikit-image: a calibration set disjoint from any eval folder."""
    from skimage import data as skdata

    arrays = [skdata.astronaut(), skdata.chelsea(), skdata.coffee(), skdata.rocket(), *skdata.stereo_motorcycle()[:2]]
    return [Image.fromarray(a) for a in arrays]


def folder_images(folder: PathLike, limit: int = 64) -> list[Image.Image]:
    """Up to ``limit`` images from ``folder`` (recursive, evenly spaced in sorted order), decoded."""
    from .int8 import calibration_images

    out = []
    for path in calibration_images(folder, limit):
        with Image.open(path) as image:
            out.append(image.convert("RGB"))
    return out

"""Top-k prediction for images, with the preprocessing the weights carry in their metadata."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..data.preprocess import read_image
from ..errors import SqueezelabError
from ..weights.checkpoint import CheckpointMeta, pretrained_cfg_of

ImageLike = Union[str, Path, Image.Image, np.ndarray]


@dataclass(frozen=True)
class ClassScore:
    """One of the top-k classes: index, name and softmax probability."""

    index: int
    name: str
    probability: float


def open_image(image: ImageLike) -> Image.Image:
    """A PIL image from a path, a PIL image or an HxW / HxWxC uint8 (or 0..1 float) array."""
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, np.ndarray):
        array = image
        if array.dtype != np.uint8:
            if array.size == 0 or not np.isfinite(array).all():
                raise SqueezelabError(f"an image array must be non-empty and finite, got shape {array.shape}")
            array = np.clip(array * (255.0 if array.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
            raise SqueezelabError(f"an image array must be HxW, HxWx3 or HxWx4, got shape {image.shape}")
        return Image.fromarray(array)
    return read_image(image)


def _label(meta: CheckpointMeta, index: int) -> str:
    return meta.categories[index] if index < len(meta.categories) else str(index)


@torch.no_grad()
def predict(model: nn.Module, images: Sequence[ImageLike] | ImageLike, topk: int = 5) -> list[list[ClassScore]]:
    """Top-``topk`` classes (softmax over the logits) for each image, best first.

    ``model`` comes from :func:`squeezelab.build_model` (or is optimized from such a model); ``images``
    are paths, PIL images or numpy arrays (one or a sequence), each preprocessed as its
    ``pretrained_cfg`` says and named by its categories.
    """
    meta = pretrained_cfg_of(model)
    preprocess = meta.require_preprocess("predict")
    if isinstance(images, (str, Path, Image.Image, np.ndarray)):
        images = [images]
    if not images:
        raise SqueezelabError("predict needs at least one image")
    batch = torch.stack([preprocess(open_image(img)) for img in images])
    model.eval()
    probs = torch.softmax(model(batch).float(), dim=1)
    k = min(topk, probs.shape[1])
    values, indices = probs.topk(k, dim=1)
    return [
        [ClassScore(int(i), _label(meta, int(i)), float(p)) for p, i in zip(row_p, row_i)]
        for row_p, row_i in zip(values.tolist(), indices.tolist())
    ]

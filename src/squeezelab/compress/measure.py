"""Accuracy of several variants of one model on the same images, preprocessing them once.

The compression curve evaluates a dozen variants on the same 100 ImageNet
samples; decoding and resizing the JPEGs once makes that cheap. Labels and
preprocessing follow :func:`squeezelab.inference.evaluate` exactly.
"""

from __future__ import annotations

from typing import Iterable

import torch
from PIL import Image
from torch import nn

from ..data.datasets import parse_data_source
from ..data.sources import Batch, cifar10_split, folder_images, pil_images
from ..errors import SqueezelabError
from ..evaluation import evaluate_model
from ..extras import require
from ..inference import scan_images
from ..io import PathLike
from ..weights.checkpoint import CheckpointMeta
from .int8 import CALIBRATION_HINT


def labelled_batches(data_dir: PathLike, meta: CheckpointMeta, batch_size: int = 50) -> list[Batch]:
    """The labelled images of ``data_dir`` (eval's layouts, :func:`~squeezelab.inference.scan_images`) through the
    weights' preprocessing, decoded once, in batches of ``batch_size``."""
    return list(scan_images(data_dir, meta).batches(meta.require_preprocess("measuring accuracy"), batch_size))


def accuracy(model: nn.Module, batches: Iterable[Batch]) -> tuple[float, float]:
    """(top-1, top-5) in percent of ``model`` on ``batches`` (from :func:`labelled_batches`)."""
    result = evaluate_model(model, iter(batches))
    return result.top1, result.top5


def skimage_photos() -> list[Image.Image]:
    """Natural RGB photos that ship with scikit-image: a calibration set disjoint from any eval folder."""
    skdata = require("skimage.data", "the scikit-image sample photos")

    arrays = [skdata.astronaut(), skdata.chelsea(), skdata.coffee(), skdata.rocket(), *skdata.stereo_motorcycle()[:2]]
    return [Image.fromarray(a) for a in arrays]


def photo_crops(photos: list[Image.Image], count: int = 64, seed: int = 0) -> list[Image.Image]:
    """``count`` calibration images from a few photos: the photos, then random crops of them (35-100% of each
    side, every other one mirrored), cycling through the photos.

    For ImageNet weights, photos like the deployment data calibrate INT8 far better than more images of
    another kind: squeezenet1_1.caffe's mean KL to fp32 on the 100 ImageNet samples is 0.023 calibrated on
    crops of 9 photos against 0.117 on 6 photos + 58 upscaled CIFAR-10 images (docs/compression.md).
    """
    generator = torch.Generator().manual_seed(seed)
    crops = []
    for index in range(max(0, count - len(photos))):
        image = photos[index % len(photos)]
        width, height = image.size
        side = float(torch.empty(1).uniform_(0.35, 1.0, generator=generator))
        crop_w, crop_h = int(width * side), int(height * side)
        left = int(torch.randint(0, width - crop_w + 1, (1,), generator=generator))
        top = int(torch.randint(0, height - crop_h + 1, (1,), generator=generator))
        crop = image.crop((left, top, left + crop_w, top + crop_h))
        crops.append(crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if index % 2 else crop)
    return (list(photos) + crops)[:count]


def default_calibration(meta: CheckpointMeta) -> tuple[list[Image.Image], str]:
    """The calibration images to use when none are named: scikit-image's photos, or none and why.

    Calibration is label-free and costs seconds, and without it 6-bit codebooks lose about 2 points of
    top-1 on the ImageNet samples (docs/compression.md), so ``compress`` calibrates whenever it can.
    """
    if meta.preprocess is None:
        return [], "no calibration: the weights carry no preprocessing to feed images with"
    try:
        return skimage_photos(), "calibrated on the 6 scikit-image photos (--calibration DIR for your own images)"
    except SqueezelabError as exc:
        return [], f"no calibration ({exc}); pass --calibration DIR to calibrate on your own images"


def calibration_set(source: str, limit: int = 64) -> list[Image.Image]:
    """``limit`` calibration images (decoded, unlabelled; evenly spaced, :meth:`ImageSource.subset`) named the way
    ``--calibration`` takes them: ``skimage`` (the 6 scikit-image photos), ``cifar10:DIR`` (CIFAR-10 *training*
    images of ``DIR/cifar10_train_jpeg.zip``, so the test images stay unseen) or a folder (recursive)."""
    if source == "skimage":
        images = pil_images(skimage_photos(), "the scikit-image photos")
    else:
        parsed = parse_data_source(source)
        images = (cifar10_split(parsed.location, "train") if parsed.kind == "cifar10"
                  else folder_images(source, what="calibration image", purpose=CALIBRATION_HINT))
    return images.subset(limit).decoded()

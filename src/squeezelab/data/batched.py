"""Small images kept decoded in one uint8 tensor and augmented a whole batch at a time.

The per-sample path (:class:`~squeezelab.data.datasets.ImageDataset`) decodes, augments and
normalises one image at a time (about 40 us a 32 px sample once cached). For data sets whose
images are small (CIFAR-10, Fashion-MNIST, digits: at most
:data:`~squeezelab.data.datasets.SMALL_INPUT_MAX` px), :class:`DecodedImages` decodes every image
once at the input size, and :class:`BatchedAugment` draws an epoch's augmentation for all of them
at the start of the epoch (from a generator seeded by the run's seed and the epoch, so a run
resumed mid-epoch sees the same batches) and applies it to a batch with one gather:

* pad-and-crop translation by up to 1/8 of the side (zero padding, as torchvision's ``RandomCrop``);
* horizontal flips, random or *derandomised*: each image is flipped with probability 1/2 in the
  first epoch and in every other epoch the opposite way (Jordan, "94% on CIFAR-10 in 3.29 seconds
  on a single GPU", 2024, section 3.6: every image is seen both ways in any two consecutive epochs);
* Cutout (DeVries & Taylor 2017): a square of ``cutout`` px set to the data's mean colour, its centre
  anywhere in the image (so part of the square may fall outside).

The result is the same distribution of augmented images as the per-sample path's pad-crop-flip,
from a different random stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from .datasets import SKIPPED_LABEL, ImageDataset
from .preprocess import Preprocess

#: Seed offset of the per-image flip phase of derandomised flips (drawn once per run, not per epoch).
_FLIP_PHASE_STREAM = 7_919


@dataclass
class DecodedImages:
    """Every image of a data set decoded at ``size`` px: ``pixels`` uint8 (N, C, size, size) and ``labels`` (N,)
    (:data:`~squeezelab.data.datasets.SKIPPED_LABEL` where an image did not decode; its pixels are zero)."""

    pixels: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def from_dataset(cls, dataset: ImageDataset, size: int, channels: int) -> "DecodedImages":
        """Decode each image of ``dataset`` once: converted to grey or RGB, squash-resized to ``size`` as the
        per-sample path's ``Resize((size, size))`` does (a no-op for images already at that size)."""
        mode = "L" if channels == 1 else "RGB"
        pixels = torch.zeros(len(dataset), channels, size, size, dtype=torch.uint8)
        labels = torch.tensor(dataset.labels, dtype=torch.int64)
        for index in range(len(dataset)):
            try:
                image = dataset.read(index)
                image.load()
            except Exception:  # noqa: BLE001 - any decoder failure means "unreadable image", as ImageDataset
                labels[index] = SKIPPED_LABEL
                continue
            pixels[index] = torch.from_numpy(_pixels(image, mode, size))
        return cls(pixels, labels)


def _pixels(image: Image.Image, mode: str, size: int) -> np.ndarray:
    """``image`` as uint8 (C, size, size) in ``mode``."""
    if image.mode != mode:
        image = image.convert(mode)
    if image.size != (size, size):
        image = TF.resize(image, [size, size], antialias=True)
    array = np.array(image, dtype=np.uint8)  # a writable copy, as torch.from_numpy wants
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


class Normalizer:
    """uint8 (N, C, H, W) -> the float tensor :class:`~squeezelab.data.preprocess.Preprocess` gives: channel order,
    value scale, mean and std, as one multiply-add per channel."""

    def __init__(self, preprocess: Preprocess) -> None:
        mean = torch.tensor(preprocess.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(preprocess.std, dtype=torch.float32).view(1, -1, 1, 1)
        self.bgr = preprocess.channel_order == "BGR"
        self.gain = float(preprocess.scale) / std
        self.offset = -mean / std
        #: the uint8 value closest to the mean colour (what Cutout fills with), per channel
        self.mean_pixels = torch.round(mean.view(-1) / float(preprocess.scale)).clamp(0, 255).to(torch.uint8)

    def __call__(self, pixels: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        if self.bgr:
            pixels = pixels.flip(1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        out = torch.empty(pixels.shape, dtype=torch.float32).contiguous(memory_format=memory_format)
        torch.addcmul(self.offset, pixels.to(torch.float32), self.gain, out=out)
        return out


@dataclass(frozen=True)
class AugmentPlan:
    """One epoch's augmentation of every image: crop offsets (N, 2) into the padded image, flips (N,), and
    Cutout centres (N, 2) or None."""

    offsets: torch.Tensor
    flips: torch.Tensor
    cutout_centres: Optional[torch.Tensor]


class BatchedAugment:
    """Pad-and-crop, flip and Cutout applied to whole uint8 batches (module docstring).

    Args:
        size: image side; ``padding`` defaults to ``size // 8`` (0 switches translation off).
        flip: ``"none"``, ``"random"`` or ``"derandomized"``.
        cutout: side of the Cutout square in px (0: off).
        fill: per-channel uint8 value of the Cutout square.
    """

    FLIPS = ("none", "random", "derandomized")

    def __init__(self, size: int, *, translate: bool = True, flip: str = "random", cutout: int = 0,
                 fill: Optional[torch.Tensor] = None) -> None:
        if flip not in self.FLIPS:
            raise ValueError(f"flip must be one of {self.FLIPS}, got {flip!r}")
        self.size, self.padding, self.flip, self.cutout = size, size // 8 if translate else 0, flip, cutout
        self.fill = fill

    def plan(self, count: int, seed: int, epoch: int) -> AugmentPlan:
        """The augmentation of all ``count`` images in ``epoch``, a function of (seed, epoch) only."""
        generator = torch.Generator().manual_seed((seed * 1_000_003 + epoch * 10_007 + 1) % 2**63)
        offsets = torch.randint(0, 2 * self.padding + 1, (count, 2), generator=generator)
        if self.flip == "derandomized":
            phase = torch.Generator().manual_seed((seed * 1_000_003 + _FLIP_PHASE_STREAM) % 2**63)
            flips = (torch.rand(count, generator=phase) < 0.5) ^ bool(epoch % 2)
        elif self.flip == "random":
            flips = torch.rand(count, generator=generator) < 0.5
        else:
            flips = torch.zeros(count, dtype=torch.bool)
        centres = torch.randint(0, self.size, (count, 2), generator=generator) if self.cutout else None
        return AugmentPlan(offsets, flips, centres)

    def apply(self, pixels: torch.Tensor, plan: AugmentPlan, indices: torch.Tensor) -> torch.Tensor:
        """Augment the uint8 batch ``pixels`` (B, C, S, S) of the images ``indices`` as ``plan`` says."""
        batch, channels, size, _ = pixels.shape
        if self.padding:
            pixels = torch.nn.functional.pad(pixels, [self.padding] * 4)
        steps = torch.arange(size)
        offsets = plan.offsets[indices]
        rows = offsets[:, 0:1] + steps  # (B, S)
        cols = torch.where(plan.flips[indices, None], size - 1 - steps, steps) + offsets[:, 1:2]
        out = pixels[torch.arange(batch)[:, None, None, None], torch.arange(channels)[None, :, None, None],
                     rows[:, None, :, None], cols[:, None, None, :]]
        if plan.cutout_centres is not None:
            centre = plan.cutout_centres[indices]
            half = self.cutout // 2
            inside_rows = (steps[None] >= centre[:, 0:1] - half) & (steps[None] < centre[:, 0:1] - half + self.cutout)
            inside_cols = (steps[None] >= centre[:, 1:2] - half) & (steps[None] < centre[:, 1:2] - half + self.cutout)
            square = inside_rows[:, None, :, None] & inside_cols[:, None, None, :]
            fill = self.fill.view(1, -1, 1, 1) if self.fill is not None else torch.zeros(1, 1, 1, 1, dtype=torch.uint8)
            out = torch.where(square, fill, out)
        return out


class BatchedEpoch:
    """The batches of one epoch: ``order`` (this process's sample indices, in order) from batch ``start`` on,
    augmented by ``augment`` (None: as decoded) and normalised; iterates ``(images, labels)``."""

    def __init__(self, images: DecodedImages, order: Sequence[int], batch_size: int, normalize: Normalizer, *,
                 augment: Optional[BatchedAugment], plan: Optional[AugmentPlan], channels_last: bool,
                 start: int = 0) -> None:
        self.images, self.batch_size, self.normalize = images, batch_size, normalize
        self.order = torch.as_tensor(list(order), dtype=torch.int64)[start * batch_size:]
        self.augment, self.plan, self.channels_last = augment, plan, channels_last

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for first in range(0, len(self.order), self.batch_size):
            indices = self.order[first:first + self.batch_size]
            pixels = self.images.pixels[indices]
            if self.augment is not None and self.plan is not None:
                pixels = self.augment.apply(pixels, self.plan, indices)
            yield self.normalize(pixels, self.channels_last), self.images.labels[indices]

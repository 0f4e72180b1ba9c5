"""Image preprocessing as data: what a set of weights expects its input to look like.

Caffe SqueezeNet weights want BGR pixels in 0..255 minus [104, 117, 123] at
227; torchvision weights want RGB/255 normalised by ImageNet mean/std after a
256 resize and a 224 centre crop. A :class:`Preprocess` records that, travels
in checkpoint metadata as JSON, and turns a PIL image into a model input.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (104.0, 117.0, 123.0)


@dataclass(frozen=True)
class Preprocess:
    """How to turn an image into the tensor a model was trained on.

    Pixels are first scaled to ``scale`` * [0, 255] in ``channel_order``, then
    ``(x - mean) / std`` per channel (mean/std in that same scale and order).
    ``resize_mode`` ``"short_side"`` resizes the shorter side to ``resize`` and
    keeps the aspect ratio; ``"squash"`` resizes to ``resize`` x ``resize``.
    Then a centre crop of ``crop`` x ``crop``.
    """

    crop: int = 224
    resize: int = 256
    resize_mode: Literal["short_side", "squash"] = "short_side"
    channel_order: Literal["RGB", "BGR"] = "RGB"
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    grayscale: bool = False

    def __post_init__(self) -> None:
        if self.resize_mode not in ("short_side", "squash"):
            raise ValueError(f"resize_mode must be 'short_side' or 'squash', got {self.resize_mode!r}")
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")
        if self.crop > self.resize:
            raise ValueError(f"crop {self.crop} is larger than resize {self.resize}")
        channels = 1 if self.grayscale else 3
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(f"mean and std need {channels} values each")

    @property
    def in_chans(self) -> int:
        return 1 if self.grayscale else 3

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """PIL image -> float tensor (C, crop, crop)."""
        image = image.convert("L" if self.grayscale else "RGB")
        if self.resize_mode == "squash":
            image = TF.resize(image, [self.resize, self.resize], antialias=True)
        else:
            image = TF.resize(image, self.resize, antialias=True)
        image = TF.center_crop(image, [self.crop, self.crop])
        array = np.asarray(image, dtype=np.float32)
        if array.ndim == 2:
            array = array[:, :, None]
        if self.channel_order == "BGR":
            array = array[:, :, ::-1]
        tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1) * self.scale
        mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
        return (tensor - mean) / std

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Preprocess":
        fields = json.loads(text)
        for key in ("mean", "std"):
            fields[key] = tuple(fields[key])
        return cls(**fields)


#: torchvision's ImageNet recipe (RGB/255, mean/std, resize 256, crop 224).
TORCHVISION = Preprocess()
#: Caffe SqueezeNet: BGR 0..255 minus [104, 117, 123], 256x256 then centre crop 227.
CAFFE = Preprocess(
    crop=227, resize=256, resize_mode="squash", channel_order="BGR", scale=1.0, mean=CAFFE_BGR_MEAN, std=(1.0, 1.0, 1.0)
)

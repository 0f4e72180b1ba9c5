"""Image preprocessing as data: what a set of weights expects its input to look like.

Caffe SqueezeNet weights want BGR pixels in 0..255 minus [104, 117, 123] at
227, resized the way Caffe's data layer did it (OpenCV ``cv2.resize`` with
``INTER_LINEAR``: no antialiasing); torchvision weights want RGB/255 normalised
by ImageNet mean/std after torchvision's antialiased PIL resize to 256 and a 224
centre crop. A :class:`Preprocess` records that (timm keeps the same fields in
its ``PretrainedCfg``), travels in checkpoint metadata as JSON, and turns a PIL
image into a model input. Each pretrained weights entry
(:mod:`squeezelab.weights.registry`) holds the one that reproduces its accuracy.
"""

from __future__ import annotations

import json
import os
import struct
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path, PurePath
from typing import BinaryIO, Literal, Optional, Sequence, TypeVar, Union

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps
from torch.nn import functional as F

from ..errors import SqueezelabError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (104.0, 117.0, 123.0)
#: CIFAR-10 training-set channel statistics (pixels / 255) and its classes, in label order.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
#: What PIL's decoders raise on a file they cannot decode (besides DecompressionBombError).
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, TypeError, KeyError,
                 ZeroDivisionError, NotImplementedError, MemoryError)
T = TypeVar("T")
_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
_PIL_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def _from_levels(array: np.ndarray, mode: str) -> Image.Image:
    """An 8-bit 'L' image from integer or float pixel levels: 0..1 floats, 0..255, or 16-bit 0..65535."""
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise SqueezelabError(f"a mode-{mode} image holds NaN or infinite pixels")
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if low < 0 or high > 65535:
        raise SqueezelabError(f"a mode-{mode} image has pixel values {low:g}..{high:g}, outside 0..65535; "
                              f"save it as an 8- or 16-bit image")
    if mode == "F" and high <= 1.0:
        array = array * 255.0
    elif mode.startswith("I;16") or high > 255:
        array = array / 257.0
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), mode="L")


def to_model_mode(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit 'L' (one band) or 'RGB', whatever its PIL mode, with the full range kept.

    16-bit and 32-bit greyscale is scaled to 0..255 (not clipped), float images in 0..1 are
    scaled up, transparency is composited over white and palette, CMYK, YCbCr, LAB and HSV
    images are converted to RGB. A mode PIL cannot convert is a one-line error.
    """
    mode = image.mode
    if mode in ("L", "RGB"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode.startswith("I") or mode == "F":
        if mode not in ("I", "F") and not mode.startswith("I;16"):
            raise SqueezelabError(f"image mode {mode} is not supported; save it as 8- or 16-bit greyscale or RGB")
        return _from_levels(np.asarray(image), mode)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "La":
        image = Image.merge("LA", image.split())  # premultiplied: alpha-weighted levels over black
    if image.mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
        return image.convert("L" if mode in ("LA", "La") else "RGB")
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise SqueezelabError(f"image mode {mode} cannot be converted to RGB ({exc})") from None


#: File suffixes read as images by every stage (training folders and zips, eval, calibration, fidelity).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")


def is_image_file_name(path: PurePath) -> bool:
    """The one rule for "is this an image" of every stage (training folders and zips, eval, calibration,
    fidelity): an image suffix and not a hidden file (``.DS_Store``, macOS ``._photo.jpg`` resource forks)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def evenly_spaced(items: Sequence[T], limit: Optional[int]) -> list[T]:
    """``limit`` items spread evenly over ``items`` (indices ``floor(i * len / limit)``), or all of them.

    The one subset rule of calibration, fidelity and fine-tuning sets: 64 of 100 sorted files are
    spread over all of them (so over every class of a class-sorted folder), not the first 64.
    """
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 1:
        raise SqueezelabError(f"image limit must be at least 1, got {limit}")
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def files_under(root: Path) -> list[Path]:
    """Every file under ``root`` (symlinks to files included, symlinked folders not entered), recursively, in
    sorted order: the one folder walk of class folders, calibration and fidelity sets.

    A folder that cannot be listed raises its OSError (``Path.rglob`` would skip it silently)."""
    def fail(exc: OSError) -> None:
        raise exc

    return sorted(Path(folder) / name for folder, _, names in os.walk(root, onerror=fail) for name in names
                  if (Path(folder) / name).is_file())


def image_files(root: Path) -> list[Path]:
    """Every image file under ``root`` (:func:`files_under`, unlabelled sets: calibration, fidelity)."""
    return [path for path in files_under(root) if is_image_file_name(path)]


def upright(image: Image.Image) -> Image.Image:
    """``image`` turned the way its EXIF orientation tag says it is shown (cameras store sensor rows and a tag;
    ``PIL.ImageOps.exif_transpose``); ``image`` itself when it has no tag or it says upright, or EXIF is damaged."""
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except DECODE_ERRORS:
        return image
    return ImageOps.exif_transpose(image) if orientation in range(2, 9) else image


def read_image(source: Union[str, Path, BinaryIO], what: str = "image", name: Optional[str] = None) -> Image.Image:
    """Decode an image file, or an open binary file such as a zip member, as 8-bit 'L' or 'RGB'
    (:func:`to_model_mode`): its first frame, upright as its EXIF orientation says (:func:`upright`).

    Every stage reads images through this one function. Unreadable files, non-regular files (a FIFO would
    block) and decompression bombs (more than PIL's ``MAX_IMAGE_PIXELS``) are one-line errors naming
    ``name`` (default: the path).
    """
    path = source if isinstance(source, (str, Path)) else name or getattr(source, "name", "<stream>")
    if isinstance(source, (str, Path)) and Path(path).exists() and not Path(path).is_file() \
            and not Path(path).is_dir():
        raise SqueezelabError(f"{what} {path} is not a regular file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's notes on damaged metadata; the image decodes or raises
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as handle:
                handle.load()
                return to_model_mode(upright(handle))
    except FileNotFoundError:
        raise SqueezelabError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise SqueezelabError(f"{what} {path} is a folder, not an image file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise SqueezelabError(f"{what} {path} is too large to decode safely ({exc.args[0].split('.')[0]}); "
                              f"downscale it first") from None
    except SqueezelabError as exc:
        raise SqueezelabError(f"{what} {path}: {exc}") from None
    except DECODE_ERRORS as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SqueezelabError(f"cannot read {what} {path} ({reason}); remove or replace it") from None


@dataclass(frozen=True)
class Preprocess:
    """How to turn an image into the tensor a model was trained on.

    Pixels are first scaled to ``scale`` * [0, 255] in ``channel_order``, then
    ``(x - mean) / std`` per channel (mean/std in that same scale and order).
    ``resize_mode`` ``"short_side"`` resizes the shorter side to ``resize`` and
    keeps the aspect ratio; ``"squash"`` resizes to ``resize`` x ``resize``.
    Then a centre crop of ``crop`` x ``crop`` (both as torchvision's ``Resize``
    and ``CenterCrop`` round sizes and offsets).

    ``interpolation`` is the resize filter. ``antialias=True`` is PIL's resize
    (torchvision's transforms on a PIL image), which widens the filter when it
    downscales; ``antialias=False`` is OpenCV's ``cv2.resize`` (``INTER_LINEAR`` /
    ``INTER_CUBIC``): taps at half-pixel centres, no widening, rounded to 8 bits,
    the resize the Caffe-trained weights saw. Checkpoints written before these two
    fields existed read as bilinear with antialiasing, what they used then.
    """

    crop: int = 224
    resize: int = 256
    resize_mode: Literal["short_side", "squash"] = "short_side"
    channel_order: Literal["RGB", "BGR"] = "RGB"
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    grayscale: bool = False
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"
    antialias: bool = True

    def __post_init__(self) -> None:
        if self.interpolation not in _PIL_FILTERS:
            raise ValueError(f"interpolation must be 'bilinear' or 'bicubic', got {self.interpolation!r}")
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

    def describe(self) -> str:
        """One line for reports, e.g. ``BGR 0-255 - mean, 256x256 (bilinear, OpenCV: no antialias), crop 227``."""
        values = "0-255" if self.scale == 1.0 else "0-1" if abs(self.scale * 255.0 - 1.0) < 1e-9 else f"x{self.scale:g}"
        norm = " - mean" if all(v == 1.0 for v in self.std) else " (- mean) / std"
        filt = f"{self.interpolation}, " + ("PIL antialias" if self.antialias else "OpenCV: no antialias")
        size = f"{self.resize}x{self.resize}" if self.resize_mode == "squash" else f"short side {self.resize}"
        return f"{'grey' if self.grayscale else self.channel_order} {values}{norm}, {size} ({filt}), crop {self.crop}"

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the resize; ``short_side`` truncates the long side as torchvision's ``Resize``."""
        if self.resize_mode == "squash":
            return self.resize, self.resize
        if width <= height:
            return self.resize, int(self.resize * height / width)
        return int(self.resize * width / height), self.resize

    def resize_pixels(self, image: Image.Image) -> torch.Tensor:
        """The resized 8-bit pixels (C, H, W) of an 'L' or 'RGB' image, before the crop."""
        size = self.resized_size(*image.size)
        if self.antialias:
            return _pixels(image.resize(size, _PIL_FILTERS[self.interpolation]) if image.size != size else image)
        pixels = _pixels(image)
        if image.size == size:
            return pixels
        resized = F.interpolate(pixels[None].float(), size=(size[1], size[0]), mode=self.interpolation,
                                align_corners=False, antialias=False)[0]
        return resized.round().clamp(0, 255).to(torch.uint8)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """PIL image -> float tensor (C, crop, crop)."""
        pixels = self.resize_pixels(to_model_mode(image).convert("L" if self.grayscale else "RGB"))
        height, width = pixels.shape[1:]
        top, left = int(round((height - self.crop) / 2.0)), int(round((width - self.crop) / 2.0))
        pixels = pixels[:, top:top + self.crop, left:left + self.crop]
        if self.channel_order == "BGR":
            pixels = pixels.flip(0)
        tensor = pixels.float() * self.scale
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


def _pixels(image: Image.Image) -> torch.Tensor:
    """An 'L' or 'RGB' PIL image as a uint8 tensor (C, H, W)."""
    array = np.array(image, dtype=np.uint8)
    return torch.from_numpy(array[:, :, None] if array.ndim == 2 else array).permute(2, 0, 1)


#: torchvision's ImageNet recipe (RGB/255, mean/std, antialiased bilinear resize of the short side to 256, crop 224).
TORCHVISION = Preprocess()
#: squeezelab's CIFAR-10 training and evaluation at 32 px (``squeezelab train --data cifar10:DIR``).
CIFAR10_32 = Preprocess(crop=32, resize=32, resize_mode="squash", mean=CIFAR10_MEAN, std=CIFAR10_STD)
#: Caffe SqueezeNet: BGR 0..255 minus [104, 117, 123], OpenCV bilinear 256x256, then centre crop 227.
CAFFE = Preprocess(crop=227, resize=256, resize_mode="squash", channel_order="BGR", scale=1.0, mean=CAFFE_BGR_MEAN,
                   std=(1.0, 1.0, 1.0), antialias=False)
#: The same, squashed straight to 227 (shared/data README section 5.1: how the v1.1 Caffe weights score best).
CAFFE_SQUASH_227 = Preprocess(crop=227, resize=227, resize_mode="squash", channel_order="BGR", scale=1.0,
                              mean=CAFFE_BGR_MEAN, std=(1.0, 1.0, 1.0), antialias=False)

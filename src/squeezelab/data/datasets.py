"""Labelled image datasets for training: digits, Fashion-MNIST, CIFAR-10 zips and ImageFolder trees.

:func:`build_datasets` turns a source string into a train and a validation
dataset plus everything a checkpoint must record (class names, channels and
the evaluation :class:`~squeezelab.data.preprocess.Preprocess`):

* ``digits``: scikit-learn's ``load_digits`` (1,797 8x8 grey images, no download);
  a fixed stratified 80/20 split.
* ``fashion-mnist[:DIR]``: the IDX files of Debian's ``dataset-fashion-mnist``
  (default ``/usr/share/datasets/fashion-mnist``); train = 60k, val = the 10k test set.
* ``cifar10:DIR``: ``cifar10_train_jpeg.zip`` and ``cifar10_test_jpeg.zip`` in DIR,
  read straight from the zips (members ``<split>/<class>/<n>.jpg``), each image decoded once and kept.
* any other string: an ImageFolder directory, either with ``train/`` and ``val/``
  sub-folders of class folders, or class folders split by ``val_fraction``.

Samples are addressed by ``(index, seed)`` pairs (see :class:`EpochSampler`):
random augmentation of a sample is seeded by its pair, so an epoch is the same
whatever the number of loader workers, and a run resumed mid-epoch sees exactly
the images an uninterrupted one would. An image that fails to decode yields
label :data:`SKIPPED_LABEL` (-1); the training loop ignores and counts it.
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler
from torchvision import transforms as T

from ..errors import SqueezelabError
from ..extras import require
from .fingerprint import arrays_fingerprint, files_fingerprint, zips_fingerprint
from .preprocess import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD, Preprocess
from .sources import (SKIPPED_LABEL, ImageDataset, ImageSource, ModelInput, cifar10_split, class_folders, grey_arrays,
                      zip_split)

__all__ = ["SKIPPED_LABEL", "DatasetBundle", "EpochSampler", "ImageDataset", "PadCropFlip", "build_datasets",
           "cifar10_test_set", "own_validation_split", "parse_data_source"]
#: A share of unreadable images above this draws a warning (none readable is an error: :func:`check_readable`).
SKIPPED_WARN_SHARE = 0.05
#: Inputs at or below this side use the CIFAR-style recipe (pad-and-crop, squash resize).
SMALL_INPUT_MAX = 64
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot"]
# Per-dataset channel statistics (pixels / 255) measured on the training split.
_STATS = {
    "digits": ((0.3053,), (0.3759,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
}


@dataclass(frozen=True)
class _Recipe:
    """Per-dataset augmentation choices.

    ``translate=False`` drops the pad-and-crop shift for data sets whose images are centred
    and size-normalised (Fashion-MNIST puts each product at the centre of the canvas, Xiao et al. 2017, section 2):
    the test images never move, and in issue 15's 5-epoch protocol the shift cost
    sqnxt23_w1 5.5 points (docs/training.md, "Short schedules").
    """

    flip: bool = True
    translate: bool = True
    random_resized_crop: bool = False


class PadCropFlip(T.Compose):
    """The small-input augmentation: squash-resize, pad by 1/8 + random crop (unless ``translate`` is
    False), optional horizontal flip.

    As a ``Compose`` it runs torchvision's transforms on PIL images; :meth:`on_pixels`
    does the same on uint8 pixels already at the input size, with the same random
    draws in the same order (``RandomCrop.get_params``, then ``RandomHorizontalFlip``),
    so both give the same pixels (tested) at a fraction of the cost.
    """

    def __init__(self, size: int, flip: bool, translate: bool = True) -> None:
        self.size, self.padding, self.flip = size, size // 8 if translate else 0, flip
        super().__init__([T.Resize((size, size), antialias=True),
                          *([T.RandomCrop(size, padding=self.padding)] if self.padding else []),
                          *([T.RandomHorizontalFlip()] if flip else [])])

    def on_pixels(self, pixels: np.ndarray, generator: Optional[torch.Generator]) -> np.ndarray:
        """uint8 (C, size, size) -> augmented uint8 (C, size, size), drawing from ``generator`` (None: global)."""
        if self.padding:
            i = int(torch.randint(0, 2 * self.padding + 1, size=(1,), generator=generator))
            j = int(torch.randint(0, 2 * self.padding + 1, size=(1,), generator=generator))
            padded = np.zeros((pixels.shape[0], self.size + 2 * self.padding, self.size + 2 * self.padding), np.uint8)
            padded[:, self.padding:self.padding + self.size, self.padding:self.padding + self.size] = pixels
            pixels = padded[:, i:i + self.size, j:j + self.size]
        if self.flip and torch.rand(1, generator=generator) < 0.5:
            pixels = pixels[:, :, ::-1]
        return pixels


@dataclass
class DatasetBundle:
    """What :func:`build_datasets` returns."""

    train: ImageDataset
    val: ImageDataset
    classes: list[str]
    in_chans: int
    input_size: int
    preprocess: Preprocess
    source: str
    #: what the run records of its data (:mod:`squeezelab.data.fingerprint`), checked on ``--resume``
    fingerprint: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class EpochSampler(torch.utils.data.Sampler):
    """Yields ``(index, seed)`` pairs: a :class:`DistributedSampler` order plus a per-sample augmentation seed.

    The order depends only on ``seed``, ``epoch``, ``rank`` and ``world_size``;
    ``start`` skips the first samples of this rank's share (resume mid-epoch).
    """

    def __init__(self, dataset: Dataset, *, seed: int, epoch: int, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1, start: int = 0) -> None:
        self.inner = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed,
                                        drop_last=False)
        self.inner.set_epoch(epoch)
        self.seed, self.epoch, self.start = seed, epoch, start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = list(self.inner)[self.start:]
        for i in indices:
            yield int(i), (self.seed * 1_000_003 + self.epoch * 10_007 + int(i)) % (2 ** 63)

    def __len__(self) -> int:
        return max(0, len(self.inner) - self.start)


def check_readable(readable: int, skipped: int, what: str, source: str) -> Optional[str]:
    """Refuse a split with no readable image (one line); a warning when more than :data:`SKIPPED_WARN_SHARE`
    of its images could not be decoded, else None. ``what`` names the split (``training images``)."""
    total = readable + skipped
    if readable == 0:
        raise SqueezelabError(f"none of the {total} {what} of {source} could be read (every file failed to decode); "
                              f"replace or remove the damaged files")
    if skipped > SKIPPED_WARN_SHARE * total:
        return (f"{skipped} of the {total} {what} of {source} ({100.0 * skipped / total:.0f}%) could not "
                f"be read and were skipped; replace or remove the damaged files")
    return None


def _eval_preprocess(input_size: int, mean: tuple[float, ...], std: tuple[float, ...], in_chans: int,
                     pretrained: Optional[Preprocess] = None) -> Preprocess:
    """The evaluation preprocessing: the fine-tuned weights' own when their channels match, else the data's stats."""
    if pretrained is not None and pretrained.in_chans == in_chans and pretrained.crop == input_size:
        return pretrained
    if input_size <= SMALL_INPUT_MAX:
        sizes = dict(crop=input_size, resize=input_size, resize_mode="squash")
    else:
        # torchvision's ImageNet evaluation: resize to input/0.875 then centre crop.
        sizes = dict(crop=input_size, resize=int(round(input_size / 0.875)), resize_mode="short_side")
    if pretrained is not None and pretrained.in_chans == in_chans:
        return replace(pretrained, **sizes)
    if in_chans == 3 and len(mean) == 1:
        mean, std = mean * 3, std * 3
    return Preprocess(**sizes, mean=mean, std=std, grayscale=in_chans == 1)


def _augmentation(input_size: int, recipe: _Recipe) -> Callable:
    if input_size <= SMALL_INPUT_MAX and not recipe.random_resized_crop:
        # CIFAR recipe (He et al. 2016, section 4.2): pad by 1/8 of the side, random crop.
        return PadCropFlip(input_size, recipe.flip, recipe.translate)
    return T.Compose([T.RandomResizedCrop(input_size, antialias=True), *([T.RandomHorizontalFlip()] if recipe.flip
                                                                         else [])])


def _stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = int(round(len(idx) * val_fraction))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (LeCun's MNIST format; magic 0x0803 images, 0x0801 labels), gzip or plain."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise SqueezelabError(f"cannot read {path}: {exc}") from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise SqueezelabError(f"{path} is not an IDX uint8 file (bad magic number)")
    ndim, header = data[3], 4 + 4 * data[3]
    if ndim == 0 or len(data) < header:
        raise SqueezelabError(f"{path} has a damaged IDX header ({ndim} dimensions in {len(data)} bytes)")
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    expected = header + math.prod(dims)  # Python integers: a header claiming 2**64 values cannot wrap around
    if len(data) != expected:
        raise SqueezelabError(f"{path} does not match its IDX header: {len(data)} bytes, the header's dimensions "
                              f"{'x'.join(map(str, dims))} need {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_fashion_mnist(directory: str) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The Fashion-MNIST IDX files in ``directory``: (train images, labels), (test images, labels)."""
    root = Path(directory)
    if not root.is_dir():
        raise SqueezelabError(f"Fashion-MNIST directory {root} does not exist; install it with "
                              f"'apt-get install dataset-fashion-mnist' or pass fashion-mnist:DIR")

    def find(stem: str) -> Path:
        for name in (f"{stem}.gz", stem):
            if (root / name).is_file():
                return root / name
        raise SqueezelabError(f"{root} has no {stem}[.gz]; expected the four Fashion-MNIST IDX files")

    parts = []
    for split in ("train", "t10k"):
        images = _read_idx(find(f"{split}-images-idx3-ubyte"))
        labels = _read_idx(find(f"{split}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise SqueezelabError(f"{root}: {split} images {images.shape} and labels {labels.shape} do not match")
        bad = np.flatnonzero(labels >= len(FASHION_MNIST_CLASSES))
        if len(bad):
            raise SqueezelabError(f"{root}: {split} label {labels[bad[0]]} (image {bad[0]}) is outside "
                                  f"0..{len(FASHION_MNIST_CLASSES) - 1}, Fashion-MNIST's classes; the labels file is "
                                  f"damaged ({len(bad)} such labels)")
        parts.append((images, labels.astype(np.int64)))
    return parts[0], parts[1]


@dataclass(frozen=True)
class DataSource:
    """A parsed ``--data`` string (module docstring): ``kind`` is ``digits``, ``fashion-mnist``, ``cifar10``
    or ``folder``; ``location`` is the DIR after the colon (may be empty) or, for a folder, the whole string."""

    kind: str
    location: str

    def absolute(self) -> str:
        """The source as a ``--data`` string with its folder made absolute, so it names the same data from
        any working directory (what a run records)."""
        if not self.location:
            return self.kind
        location = str(Path(self.location).resolve())
        return location if self.kind == "folder" else f"{self.kind}:{location}"


def parse_data_source(source: str) -> DataSource:
    """``digits``, ``fashion-mnist[:DIR]``, ``cifar10:DIR`` or an image folder (any other string).

    ``digits`` is built in: a path after it (``digits:/x``) would be ignored, so it is an error.
    """
    kind, _, location = str(source).partition(":")
    kind = kind.lower()
    if kind == "digits" and location:
        raise SqueezelabError(f"--data {source}: digits is scikit-learn's built-in set and reads no folder; "
                              f"pass --data digits")
    if kind in ("digits", "fashion-mnist") or (kind == "cifar10" and location):
        return DataSource(kind, location)
    return DataSource("folder", str(source))


@dataclass(frozen=True)
class _LabelledSource:
    """What one ``--data`` kind provides before preprocessing: its splits, classes, native channels,
    per-channel statistics, default input side and augmentation recipe."""

    train: ImageSource
    val: ImageSource
    classes: list[str]
    in_chans: int
    stats: tuple[tuple[float, ...], tuple[float, ...]]
    default_size: int
    #: :mod:`squeezelab.data.fingerprint` of everything the source reads (both splits)
    fingerprint: dict[str, Any]
    recipe: _Recipe = _Recipe()


def _digits_source(_: str, val_fraction: float, __: int) -> _LabelledSource:
    """scikit-learn's digits with a fixed stratified split (seed 0, whatever the run's seed)."""
    digits = require("sklearn.datasets", "the digits dataset").load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    train_idx, val_idx = _stratified_split(labels, val_fraction, seed=0)
    classes = [str(i) for i in range(10)]
    everything = grey_arrays(images, labels, "digits", classes)
    return _LabelledSource(everything.take(train_idx), everything.take(val_idx), classes, 1, _STATS["digits"], 32,
                           arrays_fingerprint([images, labels], len(labels), classes), _Recipe(flip=False))


def _fashion_mnist_source(directory: str, _: float, __: int) -> _LabelledSource:
    root = directory or FASHION_MNIST_DIR
    (train_images, train_labels), (test_images, test_labels) = read_fashion_mnist(root)
    arrays = [train_images, train_labels, test_images, test_labels]
    fingerprint = arrays_fingerprint(arrays, len(train_labels) + len(test_labels), FASHION_MNIST_CLASSES)
    return _LabelledSource(grey_arrays(train_images, train_labels, f"{root} (train)", FASHION_MNIST_CLASSES),
                           grey_arrays(test_images, test_labels, f"{root} (t10k)", FASHION_MNIST_CLASSES),
                           list(FASHION_MNIST_CLASSES), 1, _STATS["fashion-mnist"], 32, fingerprint,
                           _Recipe(translate=False))


def _cifar10_source(directory: str, _: float, __: int) -> _LabelledSource:
    root = Path(directory)
    if not root.is_dir():
        raise SqueezelabError(f"CIFAR-10 directory {root} does not exist")
    zips = [root / "cifar10_train_jpeg.zip", root / "cifar10_test_jpeg.zip"]
    train, val = zip_split(zips[0]), zip_split(zips[1])
    if val.classes != train.classes:
        raise SqueezelabError(f"{root}: train and test zips have different classes")
    fingerprint = zips_fingerprint(zips, len(train) + len(val), list(train.classes))
    return _LabelledSource(train, val, list(train.classes), 3, _STATS["cifar10"], 32, fingerprint)


def cifar10_test_set(directory: str | Path, preprocess: Preprocess,
                     limit: Optional[int] = None) -> tuple[ImageDataset, list[str]]:
    """The CIFAR-10 test images of ``cifar10:DIR`` (``DIR/cifar10_test_jpeg.zip``) through ``preprocess``,
    and the class names in label order; ``limit`` keeps the fixed random subset ``--val-limit`` would."""
    split = cifar10_split(directory, "test")
    return ImageDataset(split.sample(limit, 0), ModelInput(preprocess)), list(split.classes)


def _folder_source(location: str, val_fraction: float, seed: int) -> _LabelledSource:
    """Class folders under ``train/`` and ``val/``, or class folders split by ``val_fraction``."""
    root = Path(location)
    if not root.is_dir():
        raise SqueezelabError(f"data source {location!r} is not a directory or one of digits, fashion-mnist[:DIR], "
                              f"cifar10:DIR")
    if _has_train_and_val(root):
        train, val = class_folders(root / "train"), class_folders(root / "val")
        if val.classes != train.classes:
            raise SqueezelabError(f"{root}: train/ and val/ have different class folders "
                                  f"({len(train.classes)} vs {len(val.classes)})")
        files = [reader.path for reader in train.readers + val.readers]
        classes = list(train.classes)
    else:
        everything = class_folders(root)
        train_idx, val_idx = _stratified_split(np.asarray(everything.labels), val_fraction, seed)
        if len(train_idx) == 0 or len(val_idx) == 0:
            raise SqueezelabError(f"{root} has too few images to split off a {val_fraction:.0%} validation set")
        train, val = everything.take(train_idx), everything.take(val_idx)
        files, classes = [reader.path for reader in everything.readers], list(everything.classes)
    return _LabelledSource(train, val, classes, 3, (IMAGENET_MEAN, IMAGENET_STD), 224,
                           files_fingerprint(root, files, classes))


def own_validation_split(source: str) -> Optional[str]:
    """What ``source`` validates on when it brings its own split (Fashion-MNIST's and CIFAR-10's test sets, a
    folder's ``val/``), so ``val_fraction`` does not apply; ``None`` for digits and folders split by it."""
    data = parse_data_source(source)
    if data.kind == "fashion-mnist":
        return "its 10,000 test images"
    if data.kind == "cifar10":
        return "the 10,000 images of cifar10_test_jpeg.zip"
    root = Path(data.location)
    return f"the images of {root / 'val'}" if data.kind == "folder" and _has_train_and_val(root) else None


def _has_train_and_val(root: Path) -> bool:
    """Whether an ImageFolder tree is split already, into ``train/`` and ``val/`` class folders."""
    return (root / "train").is_dir() and (root / "val").is_dir()


#: ``DataSource.kind`` -> its loader ``(location, val_fraction, seed) -> _LabelledSource``.
_SOURCES: dict[str, Callable[[str, float, int], _LabelledSource]] = {
    "digits": _digits_source, "fashion-mnist": _fashion_mnist_source, "cifar10": _cifar10_source,
    "folder": _folder_source,
}


def build_datasets(
    source: str,
    input_size: Optional[int] = None,
    *,
    in_chans: Optional[int] = None,
    augment: bool = True,
    val_fraction: float = 0.2,
    train_limit: Optional[int] = None,
    val_limit: Optional[int] = None,
    seed: int = 0,
    pretrained: Optional[Preprocess] = None,
) -> DatasetBundle:
    """Build train/val datasets for ``source`` (see the module docstring for the forms).

    Args:
        input_size: side of the square model input; default 32 for digits, Fashion-MNIST and
            CIFAR-10, 224 for ImageFolder data.
        in_chans: 1 or 3; default the data's own (1 for digits and Fashion-MNIST). Grey data fed
            to a 3-channel model is replicated, which pretrained RGB weights need.
        augment: random crops and flips on the training split.
        val_fraction: held-out share for digits and for ImageFolder trees without a ``val/`` folder.
        train_limit, val_limit: use a fixed random subset of at most this many images (stratified by seed).
        seed: the split and subset seed.
        pretrained: the preprocessing of the weights being fine-tuned (their checkpoint's copy). When its
            channel count matches, its pixel format (channel order, value scale, mean/std, interpolation and
            antialias) replaces the data's statistics; its sizes are kept at its own crop, else follow
            ``input_size``.
    """
    if not 0.0 < val_fraction < 1.0:
        raise SqueezelabError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    data = parse_data_source(source)
    labelled = _SOURCES[data.kind](data.location, val_fraction, seed)
    if len(labelled.classes) < 2:
        raise SqueezelabError(f"{source} has {len(labelled.classes)} class; training a classifier needs at least 2")
    size = int(input_size or labelled.default_size)
    if size < 1:
        raise SqueezelabError(f"input size must be positive, got {size}")
    chans = int(in_chans or labelled.in_chans)
    if chans not in (1, 3):
        raise SqueezelabError(f"in_chans must be 1 or 3, got {chans}")
    mean, std = labelled.stats
    if chans == 1 and labelled.in_chans == 3:
        mean, std = (float(np.mean(mean)),), (float(np.mean(std)),)
    preprocess = _eval_preprocess(size, mean, std, chans, pretrained)
    train = ImageDataset(labelled.train.sample(train_limit, seed),
                         ModelInput(preprocess, _augmentation(size, labelled.recipe) if augment else None))
    val = ImageDataset(labelled.val.sample(val_limit, seed), ModelInput(preprocess))
    return DatasetBundle(train, val, list(labelled.classes), chans, size, preprocess, source, labelled.fingerprint)

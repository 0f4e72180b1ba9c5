"""The one image-source layer: which images a stage reads, with their labels, decoded lazily.

Training, evaluation, calibration and fidelity all take an :class:`ImageSource`: one lazy reader per
image, one label per image (:data:`UNLABELLED` = -1 where none is known), the class names when the
source has them, and a human name for errors. Constructors, one per place images live:

* :func:`class_folders`: an ImageFolder tree (one sub-folder per class, sorted order = label);
* :func:`labelled_folder`: what ``squeezelab eval`` reads: class folders labelled by ImageNet wnid,
  by the weights' category names or by sorted order (with a warning where that is surely wrong),
  or one flat folder of ImageNet files ``nXXXXXXXX_*.JPEG``;
* :func:`folder_images`: every image under a folder (recursive), labelled where the file name is
  ImageNet's (calibration, fidelity);
* :func:`zip_split` / :func:`cifar10_split`: the members ``<split>/<class>/<file>`` of a CIFAR-10 JPEG zip;
* :func:`grey_arrays`: uint8 images in memory (digits, Fashion-MNIST);
* :func:`pil_images`: images already decoded (scikit-image's photos).

Every file or member is an image by :func:`~squeezelab.data.preprocess.is_image_file_name` and is decoded
by :func:`~squeezelab.data.preprocess.read_image`. Smaller sets come from :meth:`ImageSource.subset`
(evenly spaced, :func:`~squeezelab.data.preprocess.evenly_spaced`: the one subset rule) or, for
training's ``--train-limit``/``--val-limit``, :meth:`ImageSource.sample` (a fixed random subset per seed,
what existing runs were trained on). Tensors come from :class:`ModelInput` (a ``Preprocess``, optionally
after an augmentation), through :class:`ImageDataset` (a torch ``Dataset``, for a ``DataLoader``) or
:meth:`ImageSource.batches` (in-process batches).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import SqueezelabError
from ..io import PathLike
from .imagenet import imagenet_label_of_file, imagenet_wnid_index
from .preprocess import Preprocess, evenly_spaced, files_under, image_files, is_image_file_name, read_image

#: The label of an image whose class is not known (fidelity's unlabelled images, calibration).
UNLABELLED = -1
#: Label of a training sample whose image could not be decoded (``cross_entropy(ignore_index=-1)``).
SKIPPED_LABEL = -1
#: Zip members up to this many pixels are decoded once and kept in memory (:class:`_Zip`).
CACHE_MAX_PIXELS = 64 * 64

ImageReader = Callable[[], Image.Image]
Batch = tuple[torch.Tensor, torch.Tensor]


class _Zip:
    """One zip archive, reopened in each process (DataLoader workers fork).

    Images of at most :data:`CACHE_MAX_PIXELS` pixels (all of CIFAR-10: 150 MB for the 50k training
    images) are decoded once and kept, in the process that read them; callers treat them as read-only.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: Optional[zipfile.ZipFile] = None
        self._pid = -1
        self._cache: dict[str, Image.Image] = {}

    def read(self, member: str) -> Image.Image:
        cached = self._cache.get(member)
        if cached is not None:
            return cached
        if self._zip is None or self._pid != os.getpid():
            self._zip = zipfile.ZipFile(self.path)
            self._pid = os.getpid()
        with self._zip.open(member) as handle:
            image = read_image(handle, name=f"{self.path}:{member}")
        if image.width * image.height <= CACHE_MAX_PIXELS:
            self._cache[member] = image
        return image

    def __getstate__(self) -> dict:
        return {"path": self.path, "_zip": None, "_pid": -1, "_cache": {}}


@dataclass(frozen=True, eq=False)
class ZipMember:
    """Reads one member of a zip archive."""

    archive: _Zip
    member: str

    def __call__(self) -> Image.Image:
        return self.archive.read(self.member)


@dataclass(frozen=True)
class ImageFile:
    """Reads one image file; ``what`` names it in errors (``calibration image``)."""

    path: Path
    what: str = "image"

    def __call__(self) -> Image.Image:
        return read_image(self.path, self.what)  # any PIL mode as L/RGB; bombs are refused


@dataclass(frozen=True, eq=False)
class GreyArray:
    """One grey uint8 image of an (N, H, W) array."""

    images: np.ndarray
    index: int

    def __call__(self) -> Image.Image:
        return Image.fromarray(np.ascontiguousarray(self.images[self.index], dtype=np.uint8), mode="L")


@dataclass(frozen=True, eq=False)
class Decoded:
    """An image already in memory."""

    image: Image.Image

    def __call__(self) -> Image.Image:
        return self.image


@dataclass(frozen=True, eq=False)
class ImageSource:
    """Images read lazily, one label each (:data:`UNLABELLED` where unknown), and a name for errors.

    ``classes`` names the labels in order where the source has class names. A folder scanned for
    evaluation also records its ``layout``, the files it ``skipped`` (not images) and its ``warnings``.
    """

    readers: tuple[ImageReader, ...]
    labels: tuple[int, ...]
    name: str
    classes: tuple[str, ...] = ()
    layout: str = ""
    skipped: tuple[Path, ...] = ()
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.readers) != len(self.labels):
            raise SqueezelabError(f"{self.name}: need one label per image ({len(self.readers)} images, "
                                  f"{len(self.labels)} labels; -1 for unlabelled)")

    def __len__(self) -> int:
        return len(self.readers)

    def read(self, index: int) -> Image.Image:
        """The decoded image ``index`` (8-bit 'L' or 'RGB'); a one-line error where it does not decode."""
        return self.readers[index]()

    def take(self, indices: Sequence[int]) -> "ImageSource":
        """The images at ``indices``, in that order."""
        keep = [int(i) for i in indices]
        return replace(self, readers=tuple(self.readers[i] for i in keep), labels=tuple(self.labels[i] for i in keep))

    def subset(self, limit: Optional[int]) -> "ImageSource":
        """``limit`` images spread evenly over the source (over every class of a class-sorted one), or all."""
        return self.take(evenly_spaced(range(len(self)), limit))

    def sample(self, limit: Optional[int], seed: int) -> "ImageSource":
        """A fixed random subset of ``limit`` images per ``seed``, in source order (training's
        ``--train-limit``/``--val-limit``; a run resumed with the same seed sees the same images)."""
        if limit is None or limit >= len(self):
            return self
        return self.take(np.sort(np.random.default_rng(seed).permutation(np.arange(len(self)))[:limit]))

    def unlabelled(self) -> "ImageSource":
        """The same images with no labels (for a model whose classes are not the source's)."""
        return replace(self, labels=(UNLABELLED,) * len(self), classes=())

    def relabelled(self, label_of: Sequence[int], classes: Sequence[str]) -> "ImageSource":
        """Label ``l`` becomes ``label_of[l]`` (another class order, e.g. the weights' categories)."""
        return replace(self, labels=tuple(label_of[label] if label >= 0 else label for label in self.labels),
                       classes=tuple(classes))

    def __add__(self, other: "ImageSource") -> "ImageSource":
        return ImageSource(self.readers + other.readers, self.labels + other.labels, f"{self.name} + {other.name}",
                           self.classes if self.classes == other.classes else ())

    def decoded(self) -> list[Image.Image]:
        """Every image, decoded (small sets only: calibration)."""
        return [read() for read in self.readers]

    def batches(self, preprocess: Preprocess, batch_size: int = 64) -> "Batches":
        """The images through ``preprocess`` in batches of ``batch_size`` (:class:`Batches`)."""
        return Batches(self, preprocess, batch_size)


class ModelInput:
    """Optional augmentation, then the evaluation :class:`Preprocess` (minus its resize when augmenting).

    An 'L'/'RGB' image that is already the input size (CIFAR-10 at 32 px, digits at 8 px) takes
    a NumPy path that gives the same values as the PIL one (no resize is needed) and draws from a
    private generator seeded like the global one, so it need not save and restore torch's RNG state.
    An augmentation with an ``on_pixels(pixels, generator)`` method (training's pad-crop-flip) runs
    on that path too.
    """

    def __init__(self, preprocess: Preprocess, augment: Optional[Callable] = None) -> None:
        self.preprocess = preprocess
        self.augment = augment
        self.output_size = preprocess.crop
        self._tail = replace(preprocess, resize=preprocess.crop, resize_mode="squash")
        self._mode = "L" if preprocess.grayscale else "RGB"
        fast_input = (preprocess.crop, preprocess.crop)
        self._fast_size = fast_input if (augment is None and preprocess.resized_size(*fast_input) == fast_input) \
            or hasattr(augment, "on_pixels") else None
        self._scale = np.float32(preprocess.scale)
        self._mean = np.asarray(preprocess.mean, np.float32).reshape(-1, 1, 1)
        self._std = np.asarray(preprocess.std, np.float32).reshape(-1, 1, 1)

    def __call__(self, image: Image.Image, seed: Optional[int] = None) -> torch.Tensor:
        """The model's float tensor for ``image``; random draws seeded by ``seed`` (None: torch's global RNG)."""
        if image.size == self._fast_size and image.mode == self._mode:
            array = np.asarray(image)
            pixels = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
            if self.augment is not None:
                pixels = self.augment.on_pixels(pixels, None if seed is None else torch.Generator().manual_seed(seed))
            return torch.from_numpy(self._normalize(pixels))
        if seed is None:
            return self._pil(image)
        saved = torch.get_rng_state()
        torch.default_generator.manual_seed(seed)
        try:
            return self._pil(image)
        finally:
            torch.set_rng_state(saved)

    def _normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (C, H, W) -> float32, in the operations and order of :meth:`Preprocess.__call__`."""
        if self.preprocess.channel_order == "BGR":
            pixels = pixels[::-1]
        return np.ascontiguousarray((pixels.astype(np.float32) * self._scale - self._mean) / self._std)

    def _pil(self, image: Image.Image) -> torch.Tensor:
        if self.augment is None:
            return self.preprocess(image)
        return self._tail(self.augment(image))


class ImageDataset(Dataset):
    """A source's images through a :class:`ModelInput`, for a ``DataLoader``.

    Indexed by ``i`` or by an ``(i, seed)`` pair (the augmentation's draws seeded by ``seed``). An image
    that does not decode gives zeros and, by default, label :data:`SKIPPED_LABEL` (training skips and counts
    it); with ``report_errors`` items are ``(input, label, "")`` or ``(zeros, label, the one-line error)``
    (evaluation stops on it).
    """

    def __init__(self, source: ImageSource, transform: ModelInput, report_errors: bool = False) -> None:
        self.source = source
        self.transform = transform
        self.report_errors = report_errors
        self.in_chans = transform.preprocess.in_chans

    @property
    def labels(self) -> list[int]:
        return list(self.source.labels)

    def read(self, index: int) -> Image.Image:
        return self.source.read(index)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Any, ...]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        label = self.source.labels[index]
        if self.report_errors:
            try:
                return self.transform(self.read(index), seed), label, ""
            except SqueezelabError as exc:
                return self._zeros(), label, str(exc)
        try:
            image = self.read(index)
            image.load()
        except Exception:  # noqa: BLE001 - any decoder failure means "unreadable image"
            return self._zeros(), SKIPPED_LABEL
        return self.transform(image, seed), label

    def _zeros(self) -> torch.Tensor:
        side = self.transform.output_size
        return torch.zeros(self.in_chans, side, side)


@dataclass(frozen=True, eq=False)
class Batches:
    """A source through a ``Preprocess``, as batches of ((N, C, H, W) inputs, (N,) labels), decoded lazily.

    Iterating decodes the images again, so a pass holds one batch in memory; an image that does not
    decode is its one-line error.
    """

    source: ImageSource
    preprocess: Preprocess
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise SqueezelabError(f"batch size must be at least 1, got {self.batch_size}")

    def __len__(self) -> int:
        return len(self.source)

    def __iter__(self) -> Iterator[Batch]:
        transform = ModelInput(self.preprocess)
        for start in range(0, len(self.source), self.batch_size):
            chunk = range(start, min(start + self.batch_size, len(self.source)))
            yield (torch.stack([transform(self.source.read(i)) for i in chunk]),
                   torch.tensor([self.source.labels[i] for i in chunk], dtype=torch.int64))

    def tensors(self) -> torch.Tensor:
        """All images as one tensor (only for small sets: 10,000 images at 227 take 6 GB)."""
        return torch.cat([images for images, _ in self])


def zip_split(path: Path) -> ImageSource:
    """The image members of a CIFAR-style zip (``<split>/<class>/<file>``, sorted), labelled in sorted class
    order; one-line errors for a missing or unreadable zip."""
    if not path.is_file():
        raise SqueezelabError(f"{path} not found; pass cifar10:DIR where DIR holds cifar10_train_jpeg.zip and "
                              f"cifar10_test_jpeg.zip")
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if is_image_file_name(PurePosixPath(n))]
    except zipfile.BadZipFile as exc:
        raise SqueezelabError(f"{path} is not a readable zip file ({exc})") from None
    members = sorted(n for n in names if n.count("/") >= 2)
    if not members:
        raise SqueezelabError(f"{path} holds no images laid out as <split>/<class>/<file>.jpg")
    classes = sorted({m.split("/")[-2] for m in members})
    index = {c: i for i, c in enumerate(classes)}
    archive = _Zip(path)
    return ImageSource(tuple(ZipMember(archive, m) for m in members), tuple(index[m.split("/")[-2]] for m in members),
                       str(path), tuple(classes))


def cifar10_split(directory: PathLike, split: str = "test") -> ImageSource:
    """The CIFAR-10 JPEGs of ``directory/cifar10_<split>_jpeg.zip`` (:func:`zip_split`), labelled in sorted class
    order (:data:`~squeezelab.data.preprocess.CIFAR10_CLASSES`)."""
    if split not in ("test", "train"):
        raise SqueezelabError(f"CIFAR-10 split must be 'test' or 'train', got {split!r}")
    return zip_split(Path(directory) / f"cifar10_{split}_jpeg.zip")


def _class_folder_files(root: Path) -> tuple[list[Path], list[Path], list[list[Path]], list[Path]]:
    """The entries of ``root`` (sorted, hidden ones left out), its class folders, the image files under each
    (recursive, sorted) and the other files under them."""
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    folders = [p for p in entries if p.is_dir()]
    files, others = [], []
    for folder in folders:
        found = files_under(folder)
        files.append([p for p in found if is_image_file_name(p)])
        others.extend(p for p in found if not is_image_file_name(p))
    return entries, folders, files, others


def class_folders(root: Path) -> ImageSource:
    """An ImageFolder tree: the images of each class sub-folder, labelled by sorted folder order."""
    _, folders, files, _ = _class_folder_files(root)
    if not folders or not any(files):
        raise SqueezelabError(f"{root} holds no images in class sub-folders; expected {root}/<class>/<image>.jpg "
                              f"(or train/ and val/ folders laid out that way)")
    return ImageSource(tuple(ImageFile(p) for group in files for p in group),
                       tuple(label for label, group in enumerate(files) for _ in group), str(root),
                       tuple(p.name for p in folders))


def labelled_folder(root: PathLike, num_classes: int, categories: Sequence[str] = ()) -> ImageSource:
    """The labelled images of ``root`` for a model of ``num_classes`` classes named ``categories``:
    class folders labelled by ImageNet wnid (1000 classes), by category name or by sorted order (warned
    about for 1000 classes), or a flat folder of ImageNet files ``nXXXXXXXX_*`` (1000 classes)."""
    root = Path(root)
    if not root.is_dir():
        raise SqueezelabError(f"data folder {root} does not exist or is not a folder")
    entries, folders, files, others = _class_folder_files(root)
    wnid_index = imagenet_wnid_index() if num_classes == 1000 else {}
    warnings: list[str] = []
    if folders:
        names = [p.name for p in folders]
        if wnid_index and all(n in wnid_index for n in names):
            layout, labels = "imagefolder (ImageNet wnid folders)", [wnid_index[n] for n in names]
        elif categories and all(n in categories for n in names):
            layout, labels = "imagefolder (category-name folders)", [list(categories).index(n) for n in names]
        else:
            layout, labels = "imagefolder (sorted folders)", list(range(len(names)))
            if num_classes == 1000:
                unknown = [n for n in names if n not in wnid_index and n not in categories] or names
                warnings.append(f"{len(unknown)} of {len(names)} folder names in {root} (e.g. {unknown[0]!r}) are "
                                f"neither ImageNet wnids nor class names; labels are sorted folder order "
                                f"0..{len(names) - 1}, which is almost surely wrong for ImageNet weights")
        if len(names) > num_classes:
            raise SqueezelabError(f"{root} has {len(names)} class folders but the model has {num_classes} "
                                  f"classes; point --data at a folder with at most {num_classes}")
        skipped = [p for p in entries if p.is_file()] + others
        paths = [p for group in files for p in group]
        found = [label for label, group in zip(labels, files) for _ in group]
    else:
        layout = "imagenet flat (label = wnid in the file name)"
        by_name = [(p, imagenet_label_of_file(p.name) if wnid_index and is_image_file_name(p) else None)
                   for p in entries]
        paths, found = [p for p, label in by_name if label is not None], [label for _, label in by_name
                                                                            if label is not None]
        skipped = [p for p, label in by_name if label is None]
    if not paths:
        raise SqueezelabError(f"no labelled images in {root}; expected class folders (ImageFolder) or files named "
                              f"nXXXXXXXX_*.JPEG for a 1000-class ImageNet model")
    return ImageSource(tuple(ImageFile(p) for p in paths), tuple(found), str(root), tuple(categories), layout,
                       tuple(skipped), tuple(warnings))


def folder_images(folder: PathLike, *, what: str = "image", purpose: str = "") -> ImageSource:
    """Every image under ``folder`` (recursive, sorted); files named ``nXXXXXXXX_*`` carry their ImageNet label,
    all others :data:`UNLABELLED`. ``what`` names a file in errors (``calibration image``); ``purpose`` ends the
    error for a missing or empty folder (``calibration needs a few dozen representative images``)."""
    root = Path(folder)
    hint = f"; {purpose}" if purpose else ""
    if not root.is_dir():
        raise SqueezelabError(f"{what} folder {root} does not exist or is not a folder{hint}")
    files = image_files(root)
    if not files:
        raise SqueezelabError(f"no images in {root}{hint}")
    labels = (imagenet_label_of_file(path.name) for path in files)
    return ImageSource(tuple(ImageFile(p, what) for p in files),
                       tuple(UNLABELLED if label is None else label for label in labels), str(root))


def grey_arrays(images: np.ndarray, labels: Sequence[int], name: str, classes: Sequence[str] = ()) -> ImageSource:
    """Grey uint8 images (N, H, W) in memory (digits, Fashion-MNIST) with their labels."""
    return ImageSource(tuple(GreyArray(images, i) for i in range(len(images))), tuple(int(x) for x in labels), name,
                       tuple(classes))


def pil_images(images: Sequence[Image.Image], name: str = "images") -> ImageSource:
    """Images already decoded (scikit-image's photos, crops of them), unlabelled."""
    return ImageSource(tuple(Decoded(image) for image in images), (UNLABELLED,) * len(images), name)

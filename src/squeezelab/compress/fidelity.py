"""Fidelity of a compressed or quantized model to its uncompressed parent, on unlabeled images.

Accuracy on 100 labelled images has a standard error of about 5 points; top-1
*agreement* with the parent on thousands of unlabeled images resolves a tenth of
a point. The standard set (issue 16) is the 10,000 CIFAR-10 test images, each
upscaled by the weights' own preprocessing to the model's input, plus the 100
ImageNet samples (the only ones with labels, used for top-1). Deep Compression
(Han et al., ICLR 2016, Sec. 3-4) reports accuracy only; agreement and
KL(parent || child) measure the same loss without needing labels.

``parent`` and ``child`` are any callables from a batch (N, C, H, W) to logits
(N, classes): a torch module, or a wrapper around an ONNX Runtime session.
"""

from __future__ import annotations

import functools
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from PIL import Image

from ..data.datasets import zip_split
from ..data.preprocess import Preprocess, evenly_spaced, image_files, read_image
from ..errors import SqueezelabError
from ..io import PathLike
from ..weights.imagenet import imagenet_label_of_file

Logits = Callable[[torch.Tensor], torch.Tensor]
Batch = tuple[torch.Tensor, torch.Tensor]
CIFAR_TEST_ZIP = "cifar10_test_jpeg.zip"
IMAGENET_SAMPLES = Path("images") / "imagenet_samples_100"


@dataclass
class Fidelity:
    """Agreement (percent) and mean KL(parent || child) (nats) on ``n`` images; top-1 (percent) where labelled."""

    agreement: float
    mean_kl: float
    n: int
    top1_parent: Optional[float] = None
    top1_child: Optional[float] = None
    labelled: int = 0

    def as_dict(self) -> dict[str, Union[float, int, None]]:
        return {"agreement": self.agreement, "mean_kl": self.mean_kl, "n": self.n, "labelled": self.labelled,
                "top1_parent": self.top1_parent, "top1_child": self.top1_child}

    def summary(self) -> str:
        """One line, e.g. ``agreement 98.7% (10,100 images), KL 0.0123, top-1 64.0% -> 63.0% (100 labelled)``."""
        text = f"agreement {self.agreement:.2f}% ({self.n:,} images), mean KL {self.mean_kl:.4f}"
        if self.top1_parent is not None:
            text += f", top-1 {self.top1_parent:.1f}% -> {self.top1_child:.1f}% ({self.labelled} labelled)"
        return text


def compare(parent_logits: torch.Tensor, child_logits: torch.Tensor,
            labels: Optional[torch.Tensor] = None) -> Fidelity:
    """Top-1 agreement and mean KL(softmax(parent) || softmax(child)); top-1 on the rows with a label >= 0."""
    if parent_logits.shape != child_logits.shape or parent_logits.dim() != 2 or not len(parent_logits):
        raise SqueezelabError(f"parent and child logits must be the same non-empty (N, classes) shape, got "
                              f"{tuple(parent_logits.shape)} and {tuple(child_logits.shape)}")
    p_log = F.log_softmax(parent_logits.double(), dim=1)
    c_log = F.log_softmax(child_logits.double(), dim=1)
    kl = (p_log.exp() * (p_log - c_log)).sum(dim=1)
    agree = (parent_logits.argmax(dim=1) == child_logits.argmax(dim=1)).double().mean()
    out = Fidelity(100.0 * float(agree), float(kl.mean()), len(parent_logits))
    if labels is not None:
        known = (labels >= 0) & (labels < parent_logits.shape[1])
        if bool(known.any()):
            target = labels[known]
            out.top1_parent = 100.0 * float((parent_logits[known].argmax(1) == target).double().mean())
            out.top1_child = 100.0 * float((child_logits[known].argmax(1) == target).double().mean())
            out.labelled = int(known.sum())
    return out


class ImageBatches:
    """Preprocessed images in batches of (N, C, H, W) tensors and labels (-1 = unlabeled), decoded lazily.

    Iterating decodes the images again, so a pass holds one batch in memory; run every
    model of interest on the same pass with :func:`collect_logits`.
    """

    def __init__(self, readers: Sequence[Callable[[], Image.Image]], labels: Sequence[int], preprocess: Preprocess,
                 batch_size: int = 64) -> None:
        if len(readers) != len(labels):
            raise SqueezelabError("need one label per image (-1 for unlabeled)")
        if batch_size < 1:
            raise SqueezelabError(f"batch size must be at least 1, got {batch_size}")
        self.readers, self.labels = list(readers), list(labels)
        self.preprocess, self.batch_size = preprocess, batch_size

    def __len__(self) -> int:
        return len(self.readers)

    def __add__(self, other: "ImageBatches") -> "ImageBatches":
        if other.preprocess != self.preprocess:
            raise SqueezelabError("cannot join image sets with different preprocessing")
        return ImageBatches(self.readers + other.readers, self.labels + other.labels, self.preprocess,
                            self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        for start in range(0, len(self.readers), self.batch_size):
            chunk = range(start, min(start + self.batch_size, len(self.readers)))
            images = torch.stack([self.preprocess(self.readers[i]()) for i in chunk])
            yield images, torch.tensor([self.labels[i] for i in chunk], dtype=torch.int64)

    def tensors(self) -> torch.Tensor:
        """All images as one tensor (only for small sets: 10,000 images at 227 take 6 GB)."""
        return torch.cat([images for images, _ in self])


class _ZipImage:
    def __init__(self, archive: zipfile.ZipFile, member: str) -> None:
        self.archive, self.member = archive, member

    def __call__(self) -> Image.Image:
        with self.archive.open(self.member) as handle:
            return read_image(handle, name=f"{self.archive.filename}:{self.member}")


def _cifar10_subset(data_dir: PathLike, split: str, limit: Optional[int]) -> tuple[Path, list[str], list[int]]:
    """The zip of a CIFAR-10 split and ``limit`` of its members (evenly spaced, so every class), with their labels."""
    if split not in ("test", "train"):
        raise SqueezelabError(f"CIFAR-10 split must be 'test' or 'train', got {split!r}")
    path = Path(data_dir) / f"cifar10_{split}_jpeg.zip"
    members, labels, _ = zip_split(path)
    keep = evenly_spaced(range(len(members)), limit)
    return path, [members[i] for i in keep], [labels[i] for i in keep]


def cifar10_readers(data_dir: PathLike, split: str = "test", limit: Optional[int] = None
                    ) -> list[Callable[[], Image.Image]]:
    """Decoders of the CIFAR-10 JPEGs of ``data_dir/cifar10_<split>_jpeg.zip`` (``limit`` evenly spaced, so every
    class)."""
    path, members, _ = _cifar10_subset(data_dir, split, limit)
    archive = zipfile.ZipFile(path)
    return [_ZipImage(archive, m) for m in members]


def cifar10_images(preprocess: Preprocess, *, data_dir: PathLike, split: str = "test", limit: Optional[int] = None,
                   batch_size: int = 64, labelled: bool = False) -> ImageBatches:
    """CIFAR-10 JPEGs of ``data_dir/cifar10_<split>_jpeg.zip`` (``limit`` evenly spaced, so every class); with
    ``labelled`` their CIFAR-10 labels (sorted class order, :data:`~squeezelab.data.preprocess.CIFAR10_CLASSES`),
    else -1 (for models of other classes)."""
    path, members, labels = _cifar10_subset(data_dir, split, limit)
    archive = zipfile.ZipFile(path)
    return ImageBatches([_ZipImage(archive, m) for m in members], labels if labelled else [-1] * len(members),
                        preprocess, batch_size)


def folder_images(folder: PathLike, preprocess: Preprocess, *, limit: Optional[int] = None,
                  batch_size: int = 64) -> ImageBatches:
    """Every image under ``folder`` (recursive, sorted; ``limit`` evenly spaced); files named
    ``nXXXXXXXX_*`` get their ImageNet label, all others -1."""
    root = Path(folder)
    if not root.is_dir():
        raise SqueezelabError(f"image folder {root} does not exist or is not a folder")
    files = evenly_spaced(image_files(root), limit)
    if not files:
        raise SqueezelabError(f"no images in {root}")
    labels = [imagenet_label_of_file(path.name) for path in files]
    return ImageBatches([functools.partial(read_image, p) for p in files], [-1 if label is None else label
                                                                          for label in labels], preprocess, batch_size)


def pil_images(images: Sequence[Image.Image], preprocess: Preprocess, *, batch_size: int = 64) -> ImageBatches:
    """Already decoded images (e.g. scikit-image's photos), unlabeled."""
    return ImageBatches([(lambda im=im: im) for im in images], [-1] * len(images), preprocess, batch_size)


def standard_images(preprocess: Preprocess, *, data_dir: PathLike, limit: Optional[int] = None,
                    batch_size: int = 64) -> ImageBatches:
    """The standard fidelity set: CIFAR-10 test images (all 10,000, or ``limit`` evenly spaced) + the
    100 ImageNet samples, from ``data_dir`` (``shared/data``), each through ``preprocess`` (the model's input)."""
    samples = Path(data_dir) / IMAGENET_SAMPLES
    if not samples.is_dir():
        raise SqueezelabError(f"{samples} not found; pass the data folder that holds {IMAGENET_SAMPLES}")
    return (cifar10_images(preprocess, data_dir=data_dir, limit=limit, batch_size=batch_size)
            + folder_images(samples, preprocess, batch_size=batch_size))


@torch.no_grad()
def collect_logits(models: Mapping[str, Logits], batches: ImageBatches) -> tuple[dict[str, torch.Tensor],
                                                                                  torch.Tensor]:
    """Run every model on one pass over ``batches``; returns ({name: logits (N, classes)}, labels (N,))."""
    for model in models.values():
        if isinstance(model, torch.nn.Module):
            model.eval()
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in models}
    labels = []
    for images, batch_labels in batches:
        labels.append(batch_labels)
        for name, model in models.items():
            outputs[name].append(torch.as_tensor(model(images)).float().reshape(len(images), -1))
    if not labels:
        raise SqueezelabError("the image set is empty")
    return {name: torch.cat(out) for name, out in outputs.items()}, torch.cat(labels)


def measure_fidelity(parent: Union[Logits, torch.Tensor], child: Logits, batches: ImageBatches) -> Fidelity:
    """Fidelity of ``child`` to ``parent`` on ``batches``; ``parent`` may be its precomputed logits."""
    if isinstance(parent, torch.Tensor):
        logits, labels = collect_logits({"child": child}, batches)
        return compare(parent, logits["child"], labels)
    logits, labels = collect_logits({"parent": parent, "child": child}, batches)
    return compare(logits["parent"], logits["child"], labels)

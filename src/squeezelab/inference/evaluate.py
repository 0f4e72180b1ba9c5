"""Top-1 / top-5 accuracy on a folder of labelled images.

Two layouts (``docs/weights.md``):

* ImageFolder: one sub-folder per class, sorted folder order = class index. If
  every folder name is an ImageNet wnid (``n01440764``) and the model has 1000
  classes, the wnid's index in the synset list is used instead (so a subset of
  the 1000 classes keeps the right labels); if every folder name is one of the
  weights' category names, that category's index is used.
* ImageNet flat: files named ``nXXXXXXXX_anything.JPEG`` in one folder (e.g.
  ``shared/data/images/imagenet_samples_100``); the label is the wnid's index.

``cifar10:DIR`` instead of a folder evaluates on the 10k images of ``DIR/cifar10_test_jpeg.zip``
(the test set ``squeezelab train --data cifar10:DIR`` validates on), for weights whose categories
are CIFAR-10's.

Files without an image extension are skipped and counted; an image file that
does not decode (or is a decompression bomb) is a one-line error naming it.
Folder names that are neither wnids nor category names fall back to sorted
order, with a warning when the model has ImageNet's 1000 classes.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data.datasets import SKIPPED_LABEL, cifar10_test_set, parse_data_source
from ..data.preprocess import Preprocess, is_image_file_name, read_image
from ..errors import SqueezelabError
from ..evaluation import evaluate_model
from ..extras import available, note_missing, require
from ..io import PathLike
from ..weights.checkpoint import CheckpointMeta, pretrained_cfg_of
from ..weights.imagenet import imagenet_label_of_file, imagenet_wnid_index



@dataclass
class LabelledImages:
    """The samples found in a data folder: (path, class index) pairs, the layout and what was skipped."""

    samples: list[tuple[Path, int]]
    layout: str
    skipped: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def scan_images(data_dir: PathLike, meta: CheckpointMeta) -> LabelledImages:
    """Find the labelled images of ``data_dir`` in either layout (module docstring)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise SqueezelabError(f"data folder {root} does not exist or is not a folder")
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    folders = [p for p in entries if p.is_dir()]
    wnid_index = imagenet_wnid_index() if meta.num_classes == 1000 else {}
    skipped: list[Path] = []
    samples: list[tuple[Path, int]] = []
    warnings: list[str] = []
    if folders:
        names = [p.name for p in folders]
        if wnid_index and all(n in wnid_index for n in names):
            layout, labels = "imagefolder (ImageNet wnid folders)", [wnid_index[n] for n in names]
        elif meta.categories and all(n in meta.categories for n in names):
            layout, labels = "imagefolder (category-name folders)", [meta.categories.index(n) for n in names]
        else:
            layout, labels = "imagefolder (sorted folders)", list(range(len(names)))
            if meta.num_classes == 1000:
                unknown = [n for n in names if n not in wnid_index and n not in meta.categories] or names
                warnings.append(f"{len(unknown)} of {len(names)} folder names in {root} (e.g. {unknown[0]!r}) are "
                                f"neither ImageNet wnids nor class names; labels are sorted folder order "
                                f"0..{len(names) - 1}, which is almost surely wrong for ImageNet weights")
        if len(names) > meta.num_classes:
            raise SqueezelabError(f"{root} has {len(names)} class folders but the model has {meta.num_classes} "
                                  f"classes; point --data at a folder with at most {meta.num_classes}")
        skipped.extend(p for p in entries if p.is_file())
        for folder, label in zip(folders, labels):
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                if is_image_file_name(path):
                    samples.append((path, label))
                else:
                    skipped.append(path)
    else:
        layout = "imagenet flat (label = wnid in the file name)"
        for path in entries:
            label = imagenet_label_of_file(path.name) if wnid_index and is_image_file_name(path) else None
            if label is not None:
                samples.append((path, label))
            else:
                skipped.append(path)
    if not samples:
        raise SqueezelabError(f"no labelled images in {root}; expected class folders (ImageFolder) or files named "
                              f"nXXXXXXXX_*.JPEG for a 1000-class ImageNet model")
    return LabelledImages(samples, layout, skipped, warnings)


class _Cifar10Test(Dataset):
    """The CIFAR-10 test zip as (input, label in the weights' category order, error) triples."""

    def __init__(self, directory: str, meta: CheckpointMeta) -> None:
        self.images, classes = cifar10_test_set(directory, meta.require_preprocess("evaluation"))
        if sorted(meta.categories) != classes:
            raise SqueezelabError(f"these weights' {meta.num_classes} categories are not CIFAR-10's "
                                  f"({', '.join(classes)}); evaluate CIFAR-10 weights on cifar10:DIR, or pass a "
                                  f"labelled image folder")
        self.label_of = [meta.categories.index(name) for name in classes]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        image, label = self.images[index]
        if label == SKIPPED_LABEL:
            return image, label, f"image {index} of the CIFAR-10 test zip does not decode"
        return image, self.label_of[label], ""


class _ImageDataset(Dataset):
    def __init__(self, samples: list[tuple[Path, int]], preprocess: Preprocess) -> None:
        self.samples = samples
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        """(input, label, "") or (zeros, label, the one-line reason the image cannot be used)."""
        path, label = self.samples[index]
        try:
            return self.preprocess(read_image(path)), label, ""
        except SqueezelabError as exc:
            size = self.preprocess.crop
            return torch.zeros(self.preprocess.in_chans, size, size), label, str(exc)


@contextlib.contextmanager
def second_interrupt_ends_process() -> Iterator[None]:
    """The first Ctrl-C raises KeyboardInterrupt as usual; a second one, while the first is being handled
    (data-loader workers shutting down), ends the process at once instead of being ignored.

    Only in the main thread (signal handlers can be set only there); the previous handler is restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def first(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)


@torch.no_grad()
def evaluate(model: nn.Module, data_dir: PathLike, batch_size: int = 50, workers: int = 0,
             progress: bool = False, warn: Optional[Callable[[str], None]] = None, tta: str = "none"
             ) -> dict[str, Any]:
    """Top-1 / top-5 (percent) of ``model`` (from :func:`squeezelab.build_model`) on ``data_dir``, with the
    preprocessing, classes and categories of its ``pretrained_cfg``.

    ``tta="flip"`` scores the mean logits of each image and its mirror image (``TTA_MODES``).

    ``warn`` receives the data folder's warnings (see :func:`scan_images`) before the run.

    Returns ``top1``, ``top5``, ``count``, ``correct_top1``, ``correct_top5``, ``skipped``
    (files that are not images), ``layout``, ``seconds`` and ``per_class``
    (class index -> name, count and top-1 for every class present).
    """
    if batch_size < 1 or workers < 0:
        raise SqueezelabError(f"need batch size >= 1 and workers >= 0, got {batch_size} and {workers}")
    meta = pretrained_cfg_of(model)
    source = parse_data_source(str(data_dir))
    if source.kind == "cifar10":
        dataset, layout, skipped = _Cifar10Test(source.location, meta), "cifar10 test zip", []
    else:
        found = scan_images(data_dir, meta)
        for message in found.warnings if warn is not None else ():
            warn(message)
        dataset, layout, skipped = (_ImageDataset(found.samples, meta.require_preprocess("evaluation")), found.layout,
                                    found.skipped)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=False)
    start = time.perf_counter()
    bar = None
    if progress and sys.stderr.isatty():  # a bar only on a terminal; without tqdm, one note and no bar
        if available("tqdm"):
            tqdm = require("tqdm", "the progress bar").tqdm
            bar = tqdm(total=len(dataset), unit="img", file=sys.stderr, desc="eval")
        else:
            note_missing("tqdm", "the progress bar")

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels, errors in loader:
            failed = [e for e in errors if e]
            if failed:
                raise SqueezelabError(failed[0])
            yield images, labels
            if bar is not None:
                bar.update(len(labels))

    stream = batches()
    with second_interrupt_ends_process():
        try:
            result = evaluate_model(model, stream, tta=tta)
        finally:
            stream.close()  # the loader's workers are shut down here, still under the guard
            if bar is not None:
                bar.close()
    count = len(dataset)
    seconds = time.perf_counter() - start
    names = meta.categories
    return {
        "top1": result.top1,
        "top5": result.top5,
        "count": count,
        "correct_top1": result.correct_top1,
        "correct_top5": result.correct_top5,
        "skipped": len(skipped),
        "skipped_files": [str(p) for p in skipped[:20]],
        "layout": layout,
        "tta": tta,
        "seconds": round(seconds, 3),
        "images_per_second": round(count / seconds, 2) if seconds > 0 else None,
        "per_class": {
            str(c): {"name": names[c] if c < len(names) else str(c), "count": n, "top1": 100.0 * hits / n}
            for c, (n, hits) in sorted(result.per_class.items())
        },
    }

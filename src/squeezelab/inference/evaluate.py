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
from dataclasses import replace
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data.datasets import parse_data_source
from ..data.sources import ImageDataset, ImageSource, ModelInput, cifar10_split, labelled_folder
from ..errors import SqueezelabError
from ..evaluation import evaluate_model
from ..extras import available, note_missing, require
from ..io import PathLike
from ..weights.checkpoint import CheckpointMeta, pretrained_cfg_of


def scan_images(data_dir: PathLike, meta: CheckpointMeta) -> ImageSource:
    """The labelled images of ``data_dir`` for the weights of ``meta``, in either layout (module docstring;
    :func:`~squeezelab.data.sources.labelled_folder`)."""
    return labelled_folder(data_dir, meta.num_classes, meta.categories)


def cifar10_test_images(directory: PathLike, meta: CheckpointMeta) -> ImageSource:
    """The CIFAR-10 test zip of ``cifar10:DIR``, labelled in the weights' category order (one-line error for
    weights of other classes)."""
    source = cifar10_split(directory, "test")
    if sorted(meta.categories) != list(source.classes):
        raise SqueezelabError(f"these weights' {meta.num_classes} categories are not CIFAR-10's "
                              f"({', '.join(source.classes)}); evaluate CIFAR-10 weights on cifar10:DIR, or pass a "
                              f"labelled image folder")
    labels = [meta.categories.index(name) for name in source.classes]
    return replace(source.relabelled(labels, meta.categories), layout="cifar10 test zip")


def evaluation_images(data_dir: PathLike, meta: CheckpointMeta) -> ImageSource:
    """The labelled images of ``data_dir`` for the weights of ``meta``: the CIFAR-10 test zip for
    ``cifar10:DIR``, else a folder in either layout (module docstring)."""
    parsed = parse_data_source(str(data_dir))
    return cifar10_test_images(parsed.location, meta) if parsed.kind == "cifar10" else scan_images(data_dir, meta)


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
    source = evaluation_images(data_dir, meta)
    for message in source.warnings if warn is not None else ():
        warn(message)
    dataset = ImageDataset(source, ModelInput(meta.require_preprocess("evaluation")), report_errors=True)
    layout, skipped = source.layout, source.skipped
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

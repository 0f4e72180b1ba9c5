"""The one top-k evaluation loop, shared by training, ``squeezelab eval`` and the compression curve: a stage
above ``data`` (it runs models on datasets), below ``train``, ``inference`` and ``compress``, which call it.

:func:`evaluate_model` takes a model (any callable from an image batch to
logits) and either a :class:`~torch.utils.data.Dataset` of ``(image, label)``
samples or an iterable of ``(images, labels)`` batches, and returns the mean
cross-entropy, top-1/top-5 and per-class counts; ``tta="flip"`` scores the mean of the
logits of each image and its mirror image. Samples labelled
:data:`~squeezelab.data.datasets.SKIPPED_LABEL` (images that failed to decode)
are counted, not scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Union

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from .data.datasets import SKIPPED_LABEL

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
#: Test-time augmentations (:func:`tta_logits`): none; the horizontal flip (averaged logits); or the flip and 1-px
#: translations, as fast CIFAR-10 training evaluates (Jordan, "94% on CIFAR-10 in 3.29 seconds", 2024, section 3.7).
#: Only for models trained with flips (and, for ``flip-translate``, with translations).
TTA_MODES = ("none", "flip", "flip-translate")


def tta_logits(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, tta: str) -> torch.Tensor:
    """Float logits of ``images`` under the test-time augmentation ``tta`` (one of :data:`TTA_MODES`).

    ``flip``: the mean of the logits of each image and its mirror image. ``flip-translate``: half
    the flip mean of the image, plus a quarter each of the flip means of the image shifted by one
    pixel up-left and down-right (reflection padding): six forward passes, weighted as Jordan (2024).
    """
    def mirrored(batch: torch.Tensor) -> torch.Tensor:
        return (model(batch).float() + model(batch.flip(-1)).float()) / 2

    if tta == "none":
        return model(images).float()
    if tta == "flip":
        return mirrored(images)
    size = images.shape[-2:]
    padded = F.pad(images, [1, 1, 1, 1], mode="reflect")
    shifted = [padded[..., :size[0], :size[1]], padded[..., 2:, 2:]]
    return 0.5 * mirrored(images) + 0.25 * sum(mirrored(batch.contiguous(memory_format=_memory_format(images)))
                                              for batch in shifted)


def _memory_format(images: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if images.dim() == 4 and images.is_contiguous(memory_format=torch.channels_last) \
        and not images.is_contiguous() else torch.contiguous_format


@dataclass
class EvalResult:
    """Loss and accuracy (percent) over a dataset, with the raw counts behind them."""

    loss: float
    top1: float
    top5: float
    count: int
    skipped: int = 0
    correct_top1: int = 0
    correct_top5: int = 0
    #: class index -> (samples, top-1 hits), for the classes present.
    per_class: dict[int, tuple[int, int]] = field(default_factory=dict)


def evaluate_model(model: Callable[[torch.Tensor], torch.Tensor], data: Union[Dataset, Batches], *,
                   batch_size: int = 256, device: str | torch.device = "cpu", workers: int = 0,
                   channels_last: bool = False, rank: int = 0, world_size: int = 1, tta: str = "none"
                   ) -> EvalResult:
    """Mean cross-entropy, top-1 and top-5 (percent) of ``model`` on ``data``.

    ``data`` is a dataset (batched here with ``batch_size`` and ``workers``) or an
    iterable of ``(images, labels)`` batches. With ``world_size > 1`` each rank
    evaluates every ``world_size``-th sample of a dataset and the sums are
    all-reduced, so every rank returns the full-set numbers. An ``nn.Module`` is
    put in eval mode for the loop and restored afterwards. ``tta`` is one of :data:`TTA_MODES`.
    """
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}, got {tta!r}")
    device = torch.device(device)
    if isinstance(data, Dataset):
        indices = list(range(rank, len(data), world_size))
        data = DataLoader(Subset(data, indices), batch_size=batch_size, num_workers=workers)
    sums = torch.zeros(5, dtype=torch.float64)  # loss, top1, top5, count, skipped
    per_class = torch.zeros(0, 2, dtype=torch.float64)  # (samples, top-1 hits) per class
    was_training = model.training if isinstance(model, nn.Module) else None
    if was_training is not None:
        model.eval()
    try:
        with torch.no_grad():
            for images, labels in data:
                images, labels = images.to(device), labels.to(device)
                if channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                keep = labels != SKIPPED_LABEL
                sums[4] += float((~keep).sum())
                if not keep.any():
                    continue
                images = images[keep]
                logits = tta_logits(model, images, tta)
                labels = labels[keep]
                classes = logits.shape[1]
                topk = logits.topk(min(5, classes), dim=1).indices
                hit1 = topk[:, 0] == labels
                sums[0] += float(F.cross_entropy(logits, labels, reduction="sum"))
                sums[1] += float(hit1.sum())
                sums[2] += float((topk == labels[:, None]).any(dim=1).sum())
                sums[3] += len(labels)
                if per_class.shape[0] < classes:
                    per_class = torch.cat([per_class, per_class.new_zeros(classes - per_class.shape[0], 2)])
                per_class[:, 0] += torch.bincount(labels.cpu(), minlength=classes).double()
                per_class[:, 1] += torch.bincount(labels[hit1].cpu(), minlength=classes).double()
    finally:
        if was_training is not None:
            model.train(was_training)
    if world_size > 1:
        dist.all_reduce(sums)
        size = torch.tensor([per_class.shape[0]])
        dist.all_reduce(size, op=dist.ReduceOp.MAX)
        per_class = torch.cat([per_class, per_class.new_zeros(int(size) - per_class.shape[0], 2)])
        dist.all_reduce(per_class)
    n = max(sums[3].item(), 1.0)
    classes_seen = {c: (int(row[0]), int(row[1])) for c, row in enumerate(per_class.tolist()) if row[0] > 0}
    return EvalResult(sums[0].item() / n, 100.0 * sums[1].item() / n, 100.0 * sums[2].item() / n,
                      int(sums[3].item()), int(sums[4].item()), int(sums[1].item()), int(sums[2].item()),
                      classes_seen)

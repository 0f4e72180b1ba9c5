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

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Union

import torch
import torch.nn.functional as F

from ..data.preprocess import Preprocess
from ..data.sources import Batch, Batches, cifar10_split, folder_images
from ..errors import SqueezelabError
from ..io import PathLike

Logits = Callable[[torch.Tensor], torch.Tensor]
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


def standard_images(preprocess: Preprocess, *, data_dir: PathLike, limit: Optional[int] = None,
                    batch_size: int = 64) -> Batches:
    """The standard fidelity set: CIFAR-10 test images (all 10,000, or ``limit`` evenly spaced; unlabelled) +
    the 100 ImageNet samples (labelled), from ``data_dir`` (``shared/data``), each through ``preprocess``
    (the model's input)."""
    samples = Path(data_dir) / IMAGENET_SAMPLES
    if not samples.is_dir():
        raise SqueezelabError(f"{samples} not found; pass the data folder that holds {IMAGENET_SAMPLES}")
    images = cifar10_split(data_dir, "test").subset(limit).unlabelled() + folder_images(samples)
    return images.batches(preprocess, batch_size)


@torch.no_grad()
def collect_logits(models: Mapping[str, Logits], batches: Iterable[Batch]) -> tuple[dict[str, torch.Tensor],
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


def measure_fidelity(parent: Union[Logits, torch.Tensor], child: Logits, batches: Iterable[Batch]) -> Fidelity:
    """Fidelity of ``child`` to ``parent`` on ``batches``; ``parent`` may be its precomputed logits."""
    if isinstance(parent, torch.Tensor):
        logits, labels = collect_logits({"child": child}, batches)
        return compare(parent, logits["child"], labels)
    logits, labels = collect_logits({"parent": parent, "child": child}, batches)
    return compare(logits["parent"], logits["child"], labels)

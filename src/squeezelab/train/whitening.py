"""Patch-whitening initialisation of a network's first convolution (``--whiten-stem``).

The fast-CIFAR-10 literature starts the first convolution as a whitening transform of the training
images' patches (Page 2018, "How to train your ResNet" part 8; Jordan 2024, "94% on CIFAR-10 in 3.29
seconds on a single GPU", its frozen patch-whitening initialisation): its filters are the eigenvectors
of the second-moment matrix of the normalised images' k x k patches, each divided by the square root of
its eigenvalue (plus ``eps``), and each also negated, so that after the ReLU both signs of every
direction pass. The network then starts from decorrelated, unit-variance features instead of random
projections dominated by the few directions of largest variance. Jordan keeps these filters frozen;
here they are only the initial value and train as the others do (docs/training.md measures the lever).

A 3x3 stem on RGB images has 27 patch directions, so 54 filters of a 64-filter stem are whitening
filters and the other 10 keep their random initialisation; a 1-channel stem has 9 directions (18 filters).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..data.preprocess import Preprocess
from ..data.sources import SKIPPED_LABEL, ImageDataset, ModelInput
from ..errors import SqueezelabError

#: Training images whose patches estimate the second-moment matrix (Jordan 2024 uses 5,000).
WHITENING_IMAGES = 5000
#: Added to each eigenvalue before the square root (Jordan 2024's 5e-4), so directions of almost no
#: variance are not scaled up without bound.
WHITENING_EPS = 5e-4
#: Images unfolded at a time (bounds the memory of the patch matrix).
_CHUNK = 500


def whitening_images(dataset: ImageDataset, preprocess: Preprocess, limit: int = WHITENING_IMAGES) -> torch.Tensor:
    """Up to ``limit`` images of ``dataset`` spread evenly over it (over every class of a class-sorted source),
    through ``preprocess`` without augmentation, as (N, C, H, W); images that do not decode are left out."""
    plain = ImageDataset(dataset.source.subset(limit), ModelInput(preprocess))
    batches = [images[labels != SKIPPED_LABEL] for images, labels in DataLoader(plain, batch_size=250)]
    return torch.cat(batches)


def first_convolution(model: nn.Module) -> nn.Conv2d:
    """The convolution the input meets first: the first ``Conv2d`` registered in ``model`` (the stem of
    every zoo model, whose layers are registered in the order they run)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module
    raise SqueezelabError(f"{type(model).__name__} has no Conv2d layer to whiten; drop --whiten-stem")


def patch_whitening_filters(images: torch.Tensor, conv: nn.Conv2d, eps: float = WHITENING_EPS) -> torch.Tensor:
    """(2d, C, kh, kw) filters for ``conv`` from (N, C, H, W) ``images``: the d eigenvectors of the
    second-moment matrix of their patches (as ``conv`` sees them: its kernel size and dilation, no padding),
    largest eigenvalue first, each divided by sqrt(eigenvalue + ``eps``), followed by their negatives."""
    channels, (kh, kw) = images.shape[1], conv.kernel_size
    dims = channels * kh * kw
    moments = torch.zeros(dims, dims, dtype=torch.float64)
    count = 0
    for chunk in images.split(_CHUNK):
        # (n, C*kh*kw, L) in the (C, kh, kw) order of a Conv2d weight, then one row per patch
        patches = F.unfold(chunk.float(), (kh, kw), dilation=conv.dilation).transpose(1, 2).reshape(-1, dims)
        moments += (patches.T @ patches).double()
        count += len(patches)
    if count == 0:
        raise SqueezelabError(f"the images ({tuple(images.shape)}) are smaller than the stem's {kh}x{kw} kernel; "
                              "drop --whiten-stem")
    eigenvalues, eigenvectors = torch.linalg.eigh(moments / count)  # ascending
    filters = eigenvectors.T.flip(0) / torch.sqrt(eigenvalues.flip(0).clamp(min=0.0) + eps)[:, None]
    filters = filters.reshape(dims, channels, kh, kw).float()
    return torch.cat([filters, -filters])


def whiten_first_convolution(model: nn.Module, images: torch.Tensor, eps: float = WHITENING_EPS) -> str:
    """Set the first convolution's leading filters to the patch-whitening filters of ``images`` (the
    normalised training images, as the model sees them) and zero their biases; returns what was done, for
    the run's log."""
    conv = first_convolution(model)
    if conv.groups != 1 or conv.in_channels != images.shape[1]:
        raise SqueezelabError(f"--whiten-stem needs a first convolution over all {images.shape[1]} input channels "
                              f"(groups 1); this one has {conv.in_channels} channels in {conv.groups} groups")
    positive = patch_whitening_filters(images, conv, eps).chunk(2)[0][:conv.out_channels // 2]
    chosen = torch.cat([positive, -positive])
    with torch.no_grad():
        conv.weight[:len(chosen)] = chosen.to(conv.weight.dtype)
        if conv.bias is not None:
            conv.bias[:len(chosen)] = 0.0
    return (f"stem whitened ({len(chosen)} of its {conv.out_channels} filters from the patches of "
            f"{len(images)} training images)")

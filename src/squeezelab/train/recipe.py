"""The parts of the default recipe that keep BatchNorm networks stable early (docs/training.md, "Recipe").

Two measured fixes for the epoch-1 blow-up of SqueezeNext on small data (validation
loss 3.2e9 on digits, and a final accuracy that swung from 49% to 80% with the
CPU's convolution kernels; ``benchmarks/recipe_spread.py``):

* :func:`warmup_steps`: warm up for enough *steps*, not epochs. On a small dataset one
  epoch is a few dozen steps, too few for the residual sums' scale to settle at
  the full rate (Goyal et al. 2017, section 2.2, warm up the rate over the first
  iterations for the same reason).
* :func:`recompute_bn_statistics`: before each evaluation, recompute BatchNorm's
  running statistics with the current weights ("precise BN", Wu & Johnson 2021,
  "Rethinking 'Batch' in BatchNorm", section 3). The exponential moving average
  (momentum 0.1) still holds 9% of its initial mean 0 / variance 1 after 23
  steps and lags weights that change quickly, and the error compounds through 23
  blocks: evaluation-mode logits exploded while training-mode ones were fine.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ..data.datasets import SKIPPED_LABEL

#: Minimum warmup of a BatchNorm network, in optimizer steps (capped at half the run).
BN_WARMUP_MIN_STEPS = 100
#: Training batches used to recompute BatchNorm statistics before each evaluation.
BN_STATISTICS_BATCHES = 32


def warmup_steps(warmup_epochs: float, steps_per_epoch: int, total_steps: int, batchnorm: bool) -> int:
    """Linear-warmup length: ``warmup_epochs`` epochs, and for BN networks at least
    :data:`BN_WARMUP_MIN_STEPS` steps or half the run, whichever is shorter.

    Without BatchNorm (SqueezeNet) the longer warmup hurt: squeezenet1_1 on
    digits fell from 45% to 27% (docs/training.md), so it keeps ``warmup_epochs``.
    """
    steps = int(round(warmup_epochs * steps_per_epoch))
    if batchnorm and warmup_epochs > 0:
        steps = max(steps, min(BN_WARMUP_MIN_STEPS, total_steps // 2))
    return steps


def recompute_bn_statistics(model: nn.Module, dataset: Dataset, *, batch_size: int, seed: int,
                            device: torch.device, channels_last: bool = False,
                            max_batches: int = BN_STATISTICS_BATCHES) -> None:
    """Replace the running mean/variance of every BatchNorm layer in training mode by
    their average over ``max_batches`` batches of ``dataset`` with the current weights.

    The batches are a fixed random subset drawn from ``seed`` by a private generator,
    with per-sample augmentation seeds, so the global RNG (and with it a resumed run) is untouched. Layers in eval mode
    (frozen features) keep their statistics. The model is left in the mode it was in.
    """
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    if not layers:
        return
    momenta = [m.momentum for m in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average over the batches below
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[: max_batches * batch_size]
    # (index, augmentation seed) keys, as EpochSampler gives: each sample's augmentation is seeded by its own key.
    subset = Subset(dataset, [(int(i), (seed * 1_000_003 + int(i)) % 2 ** 63) for i in order])
    try:
        with torch.no_grad():
            for images, labels in DataLoader(subset, batch_size=batch_size):
                images = images[labels != SKIPPED_LABEL].to(device)
                if len(images) < 2:
                    continue
                if channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                model(images)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum

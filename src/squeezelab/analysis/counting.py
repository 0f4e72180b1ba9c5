"""Parameter and MAC counts, the convention of shared/reference/models.md.

MACs are the multiply-accumulates of every Conv2d (``out.numel() * Cin/groups
* kh * kw``) and Linear (``batch * in * out``) at batch 1; bias adds, BN, ReLU
and pooling are not counted. Parameters are every trainable tensor: conv/FC
weights and biases and BN gamma/beta (BN running statistics are buffers).
"""

from __future__ import annotations

from typing import Union

import torch
from torch import nn

InputSize = Union[int, tuple[int, int]]


def count_params(model: nn.Module) -> int:
    """Number of parameters (conv/FC weights and biases, BN gamma/beta)."""
    return sum(p.numel() for p in model.parameters())


def _layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return output.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def hw_size(input_size: InputSize) -> tuple[int, int]:
    """An int side or an (H, W) pair as (H, W)."""
    if isinstance(input_size, int):
        return input_size, input_size
    height, width = input_size
    return int(height), int(width)


def count_macs(model: nn.Module, input_size: InputSize = 224, in_chans: int | None = None) -> int:
    """Conv + linear multiply-accumulates for one image of ``input_size`` (batch 1, eval mode).

    A model on PyTorch's meta device is counted from shapes alone (no arithmetic).
    """
    height, width = hw_size(input_size)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    channels = in_chans if in_chans is not None else int(getattr(model, "in_chans", 3))
    total = 0

    def hook(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += _layer_macs(module, output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, channels, height, width, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total

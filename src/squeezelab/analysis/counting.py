"""Parameter and MAC counts, the convention of shared/reference/models.md.

MACs are the multiply-accumulates of every Conv2d (``out.numel() * Cin/groups
* kh * kw``) and Linear (``rows * in * out``) for one image, read from the layer
trace (:func:`squeezelab.models.trace`); bias adds, BN, ReLU and pooling are not
counted. Parameters are every trainable tensor: conv/FC weights and biases and
BN gamma/beta (BN running statistics are buffers).
"""

from __future__ import annotations

from typing import Optional

from torch import nn

from ..models.tracing import InputSize, trace


def count_params(model: nn.Module) -> int:
    """Number of parameters (conv/FC weights and biases, BN gamma/beta)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: InputSize = 224, in_chans: Optional[int] = None) -> int:
    """Conv + linear multiply-accumulates for one image of ``input_size`` (the sum over the layer trace).

    A model on PyTorch's meta device is counted as well (the trace needs shapes only).
    """
    return sum(layer.macs for layer in trace(model, input_size, in_chans=in_chans))

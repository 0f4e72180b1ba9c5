"""What every zoo model shares: the timm-style interface, static size metadata and the input check.

Each model is ``forward_features`` (the convolutional trunk) followed by
``forward_head`` (global pooling and the classifier), with
``reset_classifier`` to change the number of classes for fine-tuning. The
smallest accepted input side, ``min_input_size``, is static metadata (as
torchvision's ``min_size``): :func:`min_input_side` computes it from the
trunk's size-changing layers (stem and pools), which each model lists in
``spatial_ops``; no forward pass runs at construction.

``forward`` checks the input (rank, channels, size) with one-line
:class:`~squeezelab.errors.InputShapeError` messages in eager mode and skips
the check while ``torch.jit.trace``, ``torch.fx``, ``torch.export`` /
``torch.compile`` or the ONNX exporter trace it, so the models trace as they
are, without wrappers.
"""

from __future__ import annotations

from functools import cached_property
from typing import NamedTuple, Sequence

import torch
from torch import fx, nn

from ..errors import InputShapeError

_MAX_SIDE = 1 << 16


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a cheaper mask on the CPU: one random byte per element, cut from 64-bit draws.

    The same operation (each element kept with probability ``1 - p`` and scaled by its inverse; identity in
    eval mode), but the mask costs an eighth of the random numbers: ``bernoulli_`` draws one per element,
    and on a CPU SqueezeNet's drop9 took 11% of a training step (docs/training.md, "Throughput").
    The keep probability is rounded to a multiple of 1/256 (exact for SqueezeNet's 0.5) and the scale is
    its inverse, so the expected output stays the input. Draws from torch's global generator, like
    ``nn.Dropout``, so seeded runs and ``--resume`` stay exact.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep_bytes = int(round(256 * (1.0 - self.p)))
        if keep_bytes == 0:
            return x * 0.0
        count = x.numel()
        # the full int64 range: random_() alone leaves the top bit 0, so every 8th byte would be below 128
        words = torch.empty((count + 7) // 8, dtype=torch.int64, device=x.device).random_(-2**63, 2**63 - 1)
        keep = words.view(torch.uint8)[:count].view(x.shape) < keep_bytes
        return x * (keep.to(x.dtype) * (256.0 / keep_bytes))


class SpatialOp(NamedTuple):
    """The geometry of one size-changing layer (a convolution or a pool) of a trunk."""

    kernel: int
    stride: int
    padding: int = 0
    ceil_mode: bool = False
    pool: bool = False


def conv_op(conv: nn.Conv2d) -> SpatialOp:
    """The :class:`SpatialOp` of a square convolution."""
    return SpatialOp(int(conv.kernel_size[0]), int(conv.stride[0]), int(conv.padding[0]))  # type: ignore[index]


def pool_op(pool: nn.MaxPool2d) -> SpatialOp:
    """The :class:`SpatialOp` of a square max-pool."""
    return SpatialOp(int(pool.kernel_size), int(pool.stride), int(pool.padding), bool(pool.ceil_mode), True)


def output_side(side: int, op: SpatialOp) -> int:
    """The output side of ``op`` on an input of ``side`` pixels, as PyTorch computes it (0 = rejected)."""
    if not op.pool:
        return (side + 2 * op.padding - op.kernel) // op.stride + 1 if side + 2 * op.padding >= op.kernel else 0
    out = (side + 2 * op.padding - op.kernel + (op.stride - 1 if op.ceil_mode else 0)) // op.stride + 1
    if op.ceil_mode and (out - 1) * op.stride >= side + op.padding:
        out -= 1
    return max(out, 0)


def min_input_side(ops: Sequence[SpatialOp]) -> int:
    """The smallest square input side for which every op in ``ops`` (applied in order) outputs >= 1 pixel."""
    for side in range(1, _MAX_SIDE):
        out = side
        for op in ops:
            out = output_side(out, op)
            if out < 1:
                break
        else:
            return side
    raise ValueError(f"no input side below {_MAX_SIDE} fits the layers {list(ops)}")


def check_input_shape(shape: tuple[int, ...], in_chans: int, minimum: int) -> None:
    """Raise a one-line :class:`InputShapeError` unless ``shape`` is (N, in_chans, H, W) with H, W >= ``minimum``."""
    if len(shape) != 4:
        raise InputShapeError(
            f"expected a 4-D batch (N, C, H, W), got a {len(shape)}-D tensor; add a batch dimension with x.unsqueeze(0)"
        )
    if shape[1] != in_chans:
        raise InputShapeError(
            f"expected {in_chans} input channels, got {shape[1]}; "
            f"convert the images or build the model with in_chans={shape[1]}"
        )
    if shape[2] < minimum or shape[3] < minimum:
        raise InputShapeError(
            f"input {shape[2]}x{shape[3]} is smaller than this model's minimum "
            f"{minimum}x{minimum}; resize the images up or use small_input=True"
        )


def _tracing(x: torch.Tensor) -> bool:
    """True while a tracer or compiler (jit.trace, fx, torch.export, torch.compile, ONNX export) runs ``forward``."""
    return isinstance(x, fx.Proxy) or torch.jit.is_tracing() or torch.compiler.is_compiling()


class ClassifierModel(nn.Module):
    """Base class: input validation, ``forward`` = features then head, static ``min_input_size``."""

    def __init__(self, in_chans: int, num_classes: int) -> None:
        super().__init__()
        if in_chans < 1 or num_classes < 1:
            raise ValueError(f"in_chans and num_classes must be >= 1, got {in_chans} and {num_classes}")
        self.in_chans = in_chans
        self.num_classes = num_classes

    @cached_property
    def min_input_size(self) -> int:
        """The smallest square input side the trunk accepts (from :meth:`spatial_ops`, computed once)."""
        return min_input_side(self.spatial_ops())

    def spatial_ops(self) -> list[SpatialOp]:
        """The trunk's size-changing layers in order (size-preserving ones may be left out)."""
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def get_classifier(self) -> nn.Module:
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        raise NotImplementedError

    def layer_names(self) -> dict[str, str]:
        """Module path -> the layer's name in the paper or the official Caffe prototxt (``fire2/squeeze1x1``).

        The one source of layer names: :func:`squeezelab.models.tracing.trace` (and so ``profile`` and
        ``simulate``) and the Caffe reader use it. A named module that holds layers is a *block*
        (a Fire module, a SqueezeNext block or stage). Models that name nothing use module paths.
        """
        return {}

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a one-line error for a wrong rank, channel count or too-small image."""
        check_input_shape(tuple(x.shape), self.in_chans, self.min_input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _tracing(x):
            self.check_input(x)
        return self.forward_head(self.forward_features(x))

"""What every zoo model shares: the timm-style interface and the input check.

Each model is ``forward_features`` (the convolutional trunk) followed by
``forward_head`` (global pooling and the classifier), with
``reset_classifier`` to change the number of classes for fine-tuning. The
smallest accepted input side is found once, at construction, by running the
trunk on tiny zero images, so stem overrides
(``small_input``) and the design-space knobs never need a hand-kept table.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputShapeError

_PROBE_START_SIDE = 32
_PROBE_MAX_SIDE = 2048


class ClassifierModel(nn.Module):
    """Base class: input validation, ``forward`` = features then head."""

    def __init__(self, in_chans: int, num_classes: int) -> None:
        super().__init__()
        if in_chans < 1 or num_classes < 1:
            raise ValueError(f"in_chans and num_classes must be >= 1, got {in_chans} and {num_classes}")
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.min_input_size = 1

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def get_classifier(self) -> nn.Module:
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        raise NotImplementedError

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a one-line error for a wrong rank, channel count or too-small image."""
        if x.dim() != 4:
            raise InputShapeError(
                f"expected a 4-D batch (N, C, H, W), got a {x.dim()}-D tensor; add a batch dimension with x.unsqueeze(0)"
            )
        if x.shape[1] != self.in_chans:
            raise InputShapeError(
                f"expected {self.in_chans} input channels, got {x.shape[1]}; "
                f"convert the images or build the model with in_chans={x.shape[1]}"
            )
        if x.shape[2] < self.min_input_size or x.shape[3] < self.min_input_size:
            raise InputShapeError(
                f"input {x.shape[2]}x{x.shape[3]} is smaller than this model's minimum "
                f"{self.min_input_size}x{self.min_input_size}; resize the images up or use small_input=True"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.forward_head(self.forward_features(x))

    def _set_min_input_size(self) -> None:
        """Find the smallest square input the trunk accepts by running it on tiny zero images.

        Runs once, at construction, in eval mode without gradients (BN statistics are untouched);
        at these sizes a forward pass costs far less than shape inference on the meta device.
        """
        was_training = self.training
        self.eval()

        def accepts(side: int) -> bool:
            try:
                out = self.forward_features(torch.zeros(1, self.in_chans, side, side))
            except RuntimeError:
                return False
            return out.shape[-1] >= 1 and out.shape[-2] >= 1

        try:
            with torch.no_grad():
                hi = _PROBE_START_SIDE
                while not accepts(hi):
                    if hi >= _PROBE_MAX_SIDE:
                        raise ValueError(f"model rejects even a {hi}x{hi} input; check its configuration")
                    hi *= 2
                lo = 1
                while lo < hi:
                    mid = (lo + hi) // 2
                    if accepts(mid):
                        hi = mid
                    else:
                        lo = mid + 1
        finally:
            self.train(was_training)
        self.min_input_size = lo


class UncheckedForward(nn.Module):
    """``forward_features`` then ``forward_head`` without the input check: what fx tracing can follow."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x))


def traceable(model: nn.Module) -> nn.Module:
    """A zoo model wrapped in :class:`UncheckedForward`; any other module unchanged."""
    if hasattr(model, "forward_features") and hasattr(model, "forward_head"):
        return UncheckedForward(model)
    return model

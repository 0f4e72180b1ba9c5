"""An average of a model's weights over training (Polyak averaging), for evaluation and checkpoints.

``decay`` is per optimizer step, warmed up as in timm's ``ModelEmaV2``/TensorFlow's
``ExponentialMovingAverage(num_updates=...)``: the effective decay after ``t`` updates is
``min(decay, (1 + t) / (10 + t))``, so early averages do not drag in the random initialisation.
``decay=None`` is the uniform average of every update instead, stochastic weight averaging's running
mean (Izmailov et al. 2018, Algorithm 1, averaged every step).
BatchNorm running statistics are not averaged: the trainer recomputes them on the averaged
weights before each evaluation (``recipe.recompute_bn_statistics``), since statistics
averaged over weights that moved are not the statistics of the averaged weights.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

import torch
from torch import nn


class WeightAverage:
    """A copy of ``model`` whose floating-point parameters track ``model``'s by exponential averaging
    (``decay`` per update, ``--ema-decay``), or by the uniform average of all updates (``decay=None``, ``--swa``)."""

    def __init__(self, model: nn.Module, decay: Optional[float]) -> None:
        if decay is not None and not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be between 0 and 1, got {decay}")
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model)
        for param in self.module.parameters():
            param.requires_grad_(False)

    def current_decay(self) -> float:
        """The decay of the next update (warmed up over the first updates; ``t / (t + 1)`` for the uniform average)."""
        if self.decay is None:
            return self.updates / (self.updates + 1.0)
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current parameters by one step."""
        weight = 1.0 - self.current_decay()
        averaged = [p for p in self.module.parameters() if p.dtype.is_floating_point]
        current = [p.detach() for p in model.parameters() if p.dtype.is_floating_point]
        torch._foreach_lerp_(averaged, current, weight)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])

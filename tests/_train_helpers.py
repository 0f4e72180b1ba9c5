"""Helpers shared by the training tests."""

from __future__ import annotations

import os
import signal
from typing import Callable

import torch


def stop_at(step: int) -> Callable[[torch.nn.Module], None]:
    """An after_step callback that sends this process SIGINT after ``step`` optimizer steps."""
    count = {"n": 0}

    def hook(model: torch.nn.Module) -> None:
        count["n"] += 1
        if count["n"] == step:
            os.kill(os.getpid(), signal.SIGINT)

    return hook

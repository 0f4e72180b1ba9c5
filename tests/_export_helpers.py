"""Models with realistic BatchNorm statistics for the export / optimize / bench tests."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from squeezelab.weights import build_model

#: Small enough to export 16 models in seconds; conv1 maps of even size make ceil-mode pooling matter.
SIDE = 34


@functools.lru_cache(maxsize=None)
def calibrated(name: str) -> nn.Module:
    """``name`` with random BatchNorm parameters and statistics and logits scaled to order 1.

    Random BN gamma/beta/mean/var make folding non-trivial. Randomly initialised deep
    models have logits up to 1e7 (the residual sums grow with depth), so the classifier
    is scaled down (ReLU and pooling after it are positively homogeneous) until the
    largest logit is about 1: the absolute tolerances of issue 8 (1e-4 export, 1e-5
    folding) then mean what they say. (Estimating BN statistics on random images
    instead makes BN subtract large means from large activations, and fp32 eager alone
    then differs from fp64 by 1e-3.)
    """
    torch.manual_seed(0)
    model = build_model(name).eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.2, 0.2)
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    probe = torch.randn(2, model.in_chans, side(model), side(model))
    with torch.no_grad():
        scale = model(probe).abs().max().clamp(min=1e-6)
        head = model.get_classifier()
        head.weight.div_(scale)
        if head.bias is not None:
            head.bias.div_(scale)
    return model


def side(model: nn.Module) -> int:
    return max(SIDE, model.min_input_size)


@pytest.fixture
def single_thread():
    """One intra-op thread: the inputs are tiny, and on a shared 2-core machine a second thread waits on others."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

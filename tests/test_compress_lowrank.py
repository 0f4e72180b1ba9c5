"""Low-rank factorization against numpy's SVD (Eckart-Young) and exact reconstruction at full rank."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from squeezelab.analysis import count_macs, count_params
from squeezelab.compress.lowrank import choose_rank, factorize_model, factorize_pointwise, factorize_spatial, \
    reconstruct
from squeezelab.errors import SqueezelabError
from squeezelab.models import create_model


def test_pointwise_full_rank_is_exact_and_truncation_is_eckart_young():
    torch.manual_seed(0)
    conv = nn.Conv2d(48, 32, 1)
    x = torch.randn(2, 48, 5, 5)
    full, rank, error = factorize_pointwise(conv, rank=32)
    assert rank == 32 and error < 1e-6
    assert torch.allclose(full(x), conv(x), atol=1e-5)
    low, rank, error = factorize_pointwise(conv, rank=8)
    s = np.linalg.svd(conv.weight.detach().double().numpy()[:, :, 0, 0], compute_uv=False)
    assert error == pytest.approx(np.sqrt((s[8:] ** 2).sum() / (s ** 2).sum()), rel=1e-6)
    assert count_params(low) == 8 * 48 + 32 * 8 + 32
    fc = nn.Linear(20, 30)
    pair, _, _ = factorize_pointwise(fc, rank=20)
    v = torch.randn(3, 20)
    assert torch.allclose(pair(v), fc(v), atol=1e-5)


def test_spatial_split_is_exact_at_full_rank_with_stride_and_padding():
    torch.manual_seed(1)
    conv = nn.Conv2d(8, 12, 3, stride=2, padding=1)
    x = torch.randn(1, 8, 15, 15)
    pair, rank, error = factorize_spatial(conv)
    assert rank == min(8 * 3, 12 * 3) and error < 1e-6
    assert pair[0].kernel_size == (3, 1) and pair[1].kernel_size == (1, 3)
    assert torch.allclose(pair(x), conv(x), atol=1e-5)
    assert torch.allclose(reconstruct(pair), conv.weight, atol=1e-6)
    half, rank, error = factorize_spatial(conv, rank=6)
    m = conv.weight.detach().double().permute(1, 2, 0, 3).reshape(24, 36).numpy()
    s = np.linalg.svd(m, compute_uv=False)
    assert error == pytest.approx(np.sqrt((s[6:] ** 2).sum() / (s ** 2).sum()), rel=1e-6)


def test_factorize_model_saves_params_and_macs():
    torch.manual_seed(2)
    model = create_model("squeezenet1_1").eval()
    before_p, before_m = count_params(model), count_macs(model, 96)
    factored = copy.deepcopy(model)
    done = factorize_model(factored, rank_fraction=0.25)
    assert done and all(f.params_after < f.params_before for f in done)
    assert count_params(factored) == before_p - sum(f.params_before - f.params_after for f in done)
    assert count_macs(factored, 96) < before_m
    assert {f.kind for f in done} == {"1x1", "3x3"}
    assert factored(torch.randn(1, 3, 96, 96)).shape == (1, 1000)
    assert choose_rank(torch.tensor([3.0, 2.0, 1.0]), energy=13 / 14) == 2
    with pytest.raises(SqueezelabError):
        factorize_model(factored, kinds=["5x5"])

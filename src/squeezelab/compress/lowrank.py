"""Low-rank factorization: SVD of 1x1 convs / FC layers and the 3x3 -> 3x1 + 1x3 split.

The SqueezeNet paper (Sec. 2) lists low-rank filters among the compression
paths (its Table 2 row "SVD", Denton et al. 2014). A 1x1 conv or linear layer
``W (Cout, Cin)`` becomes ``Cin -> r -> Cout`` with the rank-r truncated SVD
(Eckart-Young: the best rank-r approximation in Frobenius norm). A KxK conv
becomes a Kx1 conv to r channels followed by a 1xK conv (Tai et al. 2016, "Convolutional
neural networks with low-rank regularization", Sec. 3.1): ``W[o,c,h,w]`` is reshaped to the
matrix ``M[(c,h), (o,w)]`` and the truncated SVD of ``M`` gives the vertical
filters ``U sqrt(S)`` and the horizontal filters ``sqrt(S) V^T``, exact at full rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import torch
from torch import nn

from ..errors import SqueezelabError


@dataclass
class Factorized:
    """One factorized layer: the replacement, its rank and the relative weight error ||W - W_r|| / ||W||."""

    name: str
    kind: str
    rank: int
    full_rank: int
    params_before: int
    params_after: int
    weight_error: float
    module: nn.Module


def choose_rank(singular: torch.Tensor, rank: Optional[int] = None, energy: Optional[float] = None) -> int:
    """``rank`` if given, else the smallest rank keeping ``energy`` of sum(s^2); full rank if neither."""
    if rank is not None:
        if rank < 1:
            raise SqueezelabError(f"rank must be >= 1, got {rank}")
        return min(rank, singular.numel())
    if energy is None:
        return singular.numel()
    if not 0.0 < energy <= 1.0:
        raise SqueezelabError(f"give a rank or an energy in (0, 1], got energy={energy}")
    cum = torch.cumsum(singular.double() ** 2, 0)
    return int(torch.searchsorted(cum, energy * cum[-1] * (1 - 1e-12)).item()) + 1


def _svd(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    return u, s, vh


def factorize_pointwise(layer: nn.Conv2d | nn.Linear, rank: Optional[int] = None,
                        energy: Optional[float] = None) -> tuple[nn.Sequential, int, float]:
    """A 1x1 conv (stride 1, groups 1) or linear layer as two thinner ones; returns (module, rank, error)."""
    weight = layer.weight.detach()
    matrix = weight.reshape(weight.shape[0], -1)
    u, s, vh = _svd(matrix)
    r = choose_rank(s, rank, energy)
    root = s[:r].sqrt()
    first_w, second_w = (root[:, None] * vh[:r]).float(), (u[:, :r] * root).float()
    error = float(torch.linalg.norm(matrix.double() - (second_w.double() @ first_w.double())) /
                  torch.linalg.norm(matrix.double()).clamp(min=1e-30))
    has_bias = layer.bias is not None
    if isinstance(layer, nn.Linear):
        first, second = nn.Linear(layer.in_features, r, bias=False), nn.Linear(r, layer.out_features, bias=has_bias)
        first.weight.data.copy_(first_w)
        second.weight.data.copy_(second_w)
    else:
        first = nn.Conv2d(layer.in_channels, r, 1, stride=layer.stride, padding=layer.padding, bias=False)
        second = nn.Conv2d(r, layer.out_channels, 1, bias=has_bias)
        first.weight.data.copy_(first_w[:, :, None, None])
        second.weight.data.copy_(second_w[:, :, None, None])
    if has_bias:
        second.bias.data.copy_(layer.bias.detach())
    return nn.Sequential(first, second), r, error


def factorize_spatial(conv: nn.Conv2d, rank: Optional[int] = None, energy: Optional[float] = None
                      ) -> tuple[nn.Sequential, int, float]:
    """A KxK conv as Kx1 (to r channels) then 1xK (Tai et al. 2016); returns (module, rank, error)."""
    cout, cin, kh, kw = conv.weight.shape
    matrix = conv.weight.detach().permute(1, 2, 0, 3).reshape(cin * kh, cout * kw)  # M[(c,h),(o,w)]
    u, s, vh = _svd(matrix)
    r = choose_rank(s, rank, energy)
    root = s[:r].sqrt()
    vertical = (u[:, :r] * root).float()  # (c,h) x r
    horizontal = (root[:, None] * vh[:r]).float()  # r x (o,w)
    error = float(torch.linalg.norm(matrix.double() - vertical.double() @ horizontal.double()) /
                  torch.linalg.norm(matrix.double()).clamp(min=1e-30))
    (sh, sw), (ph, pw) = conv.stride, conv.padding
    first = nn.Conv2d(cin, r, (kh, 1), stride=(sh, 1), padding=(ph, 0), bias=False)
    second = nn.Conv2d(r, cout, (1, kw), stride=(1, sw), padding=(0, pw), bias=conv.bias is not None)
    first.weight.data.copy_(vertical.reshape(cin, kh, r).permute(2, 0, 1)[:, :, :, None])
    second.weight.data.copy_(horizontal.reshape(r, cout, kw).permute(1, 0, 2)[:, :, None, :])
    if conv.bias is not None:
        second.bias.data.copy_(conv.bias.detach())
    return nn.Sequential(first, second), r, error


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def factorize_model(model: nn.Module, rank_fraction: Optional[float] = None, energy: Optional[float] = 0.9,
                    kinds: Iterable[str] = ("1x1", "3x3")) -> list[Factorized]:
    """Replace every eligible layer of ``model`` in place where the factorization saves parameters.

    Eligible: groups=1, dilation 1 convs that are 1x1 (kind "1x1", linears too) or square KxK with
    K > 1 (kind "3x3"). ``rank_fraction`` (of the full rank) takes precedence over ``energy``.
    MACs before/after are best measured on the whole model with
    :func:`squeezelab.analysis.count_macs`, since a factorized pair's cost depends on its input size.
    """
    kinds = set(kinds)
    unknown = kinds - {"1x1", "3x3"}
    if unknown:
        raise SqueezelabError(f"unknown factorization kind(s) {sorted(unknown)}; use 1x1 and/or 3x3")
    done: list[Factorized] = []
    for name, layer in list(model.named_modules()):
        if isinstance(layer, nn.Conv2d):
            if layer.groups != 1 or layer.dilation != (1, 1):
                continue
            kind = "1x1" if layer.kernel_size == (1, 1) else "3x3"
        elif isinstance(layer, nn.Linear):
            kind = "1x1"
        else:
            continue
        if kind not in kinds or (kind == "3x3" and layer.kernel_size[0] != layer.kernel_size[1]):
            continue
        weight = layer.weight
        full = min(weight.shape[0], weight[0].numel()) if kind == "1x1" else \
            min(weight.shape[1] * weight.shape[2], weight.shape[0] * weight.shape[3])
        rank = max(1, round(rank_fraction * full)) if rank_fraction is not None else None
        factor = factorize_pointwise if kind == "1x1" else factorize_spatial
        module, r, error = factor(layer, rank=rank, energy=None if rank is not None else energy)
        if _params(module) >= _params(layer):
            continue
        parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        setattr(parent, name.rsplit(".", 1)[-1], module)
        done.append(Factorized(name, kind, r, full, _params(layer), _params(module), error, module))
    return done


def reconstruct(module: nn.Sequential) -> torch.Tensor:
    """The dense weight a factorized pair computes (for checkpoints in the original architecture)."""
    first, second = module[0], module[1]
    if isinstance(first, nn.Linear):
        return second.weight @ first.weight
    a, b = first.weight, second.weight
    if a.shape[2:] == (1, 1):
        return torch.einsum("or,rc->oc", b[:, :, 0, 0], a[:, :, 0, 0])[:, :, None, None]
    return torch.einsum("rch,orw->ochw", a[:, :, :, 0], b[:, :, 0, :])

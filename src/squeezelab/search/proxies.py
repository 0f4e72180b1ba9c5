"""Accuracy proxies: what a search ranks designs by before (or instead of) training them.

Baselines: the number of parameters and MACs. Zero-cost proxies, each scored on a network at
initialisation (Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021, §3):

- ``synflow`` (Tanaka et al., NeurIPS 2020): sum over conv / FC weights of |theta * dR/dtheta|, where
  R is the sum of the outputs of the network with every parameter replaced by its absolute value, on
  an all-ones input. Computed in float64 and returned as its natural log: it is a product over the
  layers and overflows float32 on deep networks. BatchNorm runs in eval mode, where at initialisation
  (running mean 0, variance 1) it is the identity.
- ``snip`` (Lee et al., ICLR 2019): sum of |theta * dL/dtheta| over conv / FC weights, cross-entropy L
  on a batch of real images.
- ``grad_norm``: the sum over conv / FC layers of the L2 norm of dL/dW.
- ``jacob_cov`` (Mellor et al., arXiv 2006.04647v1): with J the input gradients of the summed output,
  one row per image, and v the eigenvalues of J's correlation matrix,
  ``-sum(log(v + 1e-5) + 1 / (v + 1e-5))``.
- ``naswot`` (Mellor et al., ICML 2021): log |det K| with K[i, j] the number of ReLU units on which
  images i and j agree (both active or both inactive).

The data-dependent proxies run the network in training mode (BatchNorm on batch statistics).
``squeezelab.search`` validates them against short training (docs/codesign.md) and uses a proxy only
where it ranks designs better than the number of parameters.
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SqueezelabError

#: The zero-cost proxies, each ``f(model, images, labels) -> float`` (higher should mean more accurate).
ZERO_COST = ("synflow", "snip", "grad_norm", "jacob_cov", "naswot")
#: Every proxy ``squeezelab search`` knows: the two size baselines, the zero-cost proxies, short training.
PROXIES = ("params", "macs", *ZERO_COST, "short_training")


def _weights(model: nn.Module) -> Iterable[nn.Parameter]:
    """The conv and FC weights, the tensors zero-cost proxies score (Abdelfattah et al. 2021)."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            yield module.weight


def synflow(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """log of the SynFlow score of ``model`` for inputs of ``input_shape`` (C, H, W), in float64.

    ``model`` is left untouched (a float64 copy with absolute-valued parameters is scored).
    """
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for param in net.parameters():
            param.abs_()
    net.zero_grad(set_to_none=True)
    output = net(torch.ones((1, *input_shape), dtype=torch.float64))
    output.sum().backward()
    score = sum(float((w.detach() * w.grad).abs().sum()) for w in _weights(net) if w.grad is not None)
    if not math.isfinite(score):
        raise SqueezelabError(f"synflow overflowed float64 ({score}); the network is too deep for this proxy")
    return math.log(score) if score > 0 else -math.inf


def _loss_gradients(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> nn.Module:
    """A training-mode copy of ``model`` holding the gradients of the cross-entropy on one batch."""
    net = copy.deepcopy(model).train()
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(images), labels).backward()
    return net


def _snip_of(net: nn.Module) -> float:
    return sum(float((w.detach() * w.grad).abs().sum()) for w in _weights(net) if w.grad is not None)


def _grad_norm_of(net: nn.Module) -> float:
    return sum(float(w.grad.norm()) for w in _weights(net) if w.grad is not None)


def snip(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Sum of |theta * dL/dtheta| over the conv and FC weights (SNIP connection sensitivity)."""
    return _snip_of(_loss_gradients(model, images, labels))


def grad_norm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Sum over the conv and FC layers of the L2 norm of the loss gradient of their weights."""
    return _grad_norm_of(_loss_gradients(model, images, labels))


def jacob_cov(model: nn.Module, images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> float:
    """Mellor et al.'s Jacobian-covariance score: how differently the network's input gradients vary per image."""
    net = copy.deepcopy(model).train()
    x = images.clone().requires_grad_(True)
    output = net(x)
    output.backward(torch.ones_like(output))
    jacobian = x.grad.reshape(len(x), -1).double()
    eigenvalues = torch.linalg.eigvalsh(torch.corrcoef(jacobian))
    k = 1e-5
    return float(-(torch.log(eigenvalues + k) + 1.0 / (eigenvalues + k)).sum())


def relu_kernel(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """K[i, j]: the ReLU units (over every ``nn.ReLU`` output) on which images i and j are both active or both
    inactive (Mellor et al. 2021, eq. 1: the number of units minus the Hamming distance of the binary codes)."""
    net = copy.deepcopy(model).train()
    kernel = torch.zeros(len(images), len(images), dtype=torch.float64)

    def count(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        codes = (output.detach().reshape(len(images), -1) > 0).double()
        kernel.add_(codes @ codes.T + (1 - codes) @ (1 - codes).T)

    handles = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, nn.ReLU)]
    if not handles:
        raise SqueezelabError(f"{type(model).__name__} has no nn.ReLU module for the NASWOT kernel")
    try:
        with torch.no_grad():
            net(images)
    finally:
        for handle in handles:
            handle.remove()
    return kernel


def naswot(model: nn.Module, images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> float:
    """log |det K| of :func:`relu_kernel` (NASWOT, "neural architecture search without training")."""
    return float(torch.linalg.slogdet(relu_kernel(model, images))[1])


_DATA_PROXIES: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], float]] = {
    "snip": snip, "grad_norm": grad_norm, "jacob_cov": jacob_cov, "naswot": naswot}


def zero_cost_scores(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                     names: Iterable[str] = ZERO_COST) -> dict[str, float]:
    """The named zero-cost proxies of ``model`` on one batch (``synflow`` uses only the batch's image shape)."""
    scores = {}
    names = list(names)
    if "snip" in names and "grad_norm" in names:  # one backward pass serves both
        net = _loss_gradients(model, images, labels)
        scores.update(snip=_snip_of(net), grad_norm=_grad_norm_of(net))
    for name in names:
        if name in scores:
            continue
        if name == "synflow":
            scores[name] = synflow(model, tuple(images.shape[1:]))
        elif name in _DATA_PROXIES:
            scores[name] = _DATA_PROXIES[name](model, images, labels)
        else:
            raise SqueezelabError(f"unknown zero-cost proxy {name!r}; choose from {', '.join(ZERO_COST)}")
    return scores

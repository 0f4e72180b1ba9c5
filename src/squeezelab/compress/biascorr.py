"""Calibration after pruning and weight sharing: bias correction and least-squares codebooks.

Bias correction (Nagel et al. 2019, "Data-Free Quantization", Sec. 4.2):

Pruning and k-means shift each output channel's expected pre-activation by
``sum_c (sum_hw dW[o,c,h,w]) * E[x_c]`` where ``dW = W - W_shared`` and ``E[x_c]``
is the mean of input channel ``c``. Running the original model on a handful of
calibration images gives ``E[x_c]`` for every layer; adding the shift to the
bias removes it. No weight changes and no labels: the codes stay as they are,
only the fp32 biases stored in the ``.sqz`` change (and decode bit-exactly).

Least-squares codebooks (:func:`refine_codebooks`, the label-free counterpart of
Deep Compression's centroid fine-tuning, Han et al. 2016, Sec. 3.3): layer by
layer in forward order, the centroids and the bias are fitted so that the
compressed layer, fed the compressed model's own activations, reproduces the
uncompressed layer's output on the uncompressed activations. Later layers so
also absorb the error of earlier ones. Codes, masks and file layout stay as they are.

Codebook fine-tuning (:func:`distil_codebooks`, Sec. 3.3 itself): SGD on the
centroids with the shared gradient, masks and codes held, on unlabeled images by
distillation from the uncompressed model (cross-entropy where labels exist).
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..errors import SqueezelabError
from ..weights.checkpoint import CheckpointMeta
from ..weights.loader import model_from_state
from .deep import CompressedModel
from .sharing import finetune_codebook, least_squares_codebook


@torch.no_grad()
def input_channel_means(model: nn.Module, names: Sequence[str], images: torch.Tensor,
                        batch_size: int = 8) -> dict[str, torch.Tensor]:
    """Mean of every input channel (over images and positions) of the conv/linear modules ``names``."""
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    modules = dict(model.named_modules())

    def hook(name: str) -> Callable[[nn.Module, tuple], None]:
        def record(_module: nn.Module, inputs: tuple) -> None:
            x = inputs[0].double()
            dims = [0] + list(range(2, x.dim()))
            sums[name] = sums.get(name, 0) + x.sum(dim=dims)
            counts[name] = counts.get(name, 0) + x.numel() // x.shape[1]
        return record

    handles = [modules[n].register_forward_pre_hook(hook(n)) for n in names]
    try:
        model.eval()
        for start in range(0, len(images), batch_size):
            model(images[start:start + batch_size])
    finally:
        for handle in handles:
            handle.remove()
    return {n: sums[n] / counts[n] for n in sums}


def correct_biases(compressed: CompressedModel, original: Mapping[str, torch.Tensor], meta: CheckpointMeta,
                   images: Sequence[Image.Image]) -> int:
    """Adjust the stored biases of ``compressed`` in place; returns how many layers were corrected."""
    model = model_from_state(original, meta)
    preprocess = meta.require_preprocess("bias correction")
    batch = torch.stack([preprocess(image) for image in images])
    layers = [k[: -len(".weight")] for k in compressed.shared if f"{k[: -len('.weight')]}.bias" in compressed.raw]
    means = input_channel_means(model, layers, batch)
    for layer in layers:
        name = f"{layer}.weight"
        delta = original[name].double() - compressed.shared[name].decode().double()
        per_in = delta.reshape(delta.shape[0], delta.shape[1], -1).sum(dim=2)
        bias = compressed.raw[f"{layer}.bias"]
        compressed.raw[f"{layer}.bias"] = (bias.double() + per_in @ means[layer]).to(bias.dtype)
    return len(layers)


def _features(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The (J, positions) matrix whose columns the layer multiplies by its (O, J) weight matrix."""
    if isinstance(module, nn.Linear):
        return x.reshape(-1, x.shape[-1]).t()
    cols = F.unfold(x, module.kernel_size, dilation=module.dilation, padding=module.padding, stride=module.stride)
    return cols.transpose(0, 1).reshape(cols.shape[1], -1)


class _Moments:
    """Running sums for the covariance of the compressed layer's inputs and their cross-covariance with the
    uncompressed layer's inputs."""

    def __init__(self) -> None:
        self.count = 0
        self.sum_c = self.sum_o = self.cc = self.co = 0.0

    def add(self, xc: torch.Tensor, xo: torch.Tensor) -> None:
        xc, xo = xc.double(), xo.double()
        self.count += xc.shape[1]
        self.sum_c = self.sum_c + xc.sum(dim=1)
        self.sum_o = self.sum_o + xo.sum(dim=1)
        self.cc = self.cc + xc @ xc.t()
        self.co = self.co + xc @ xo.t()


@torch.no_grad()
def refine_codebooks(compressed: CompressedModel, original: Mapping[str, torch.Tensor], meta: CheckpointMeta,
                     images: torch.Tensor, chunk: int = 4, ridge: float = 1e-6) -> int:
    """Least-squares centroids and biases for every shared conv/linear layer of ``compressed``, in place.

    ``images`` are preprocessed calibration inputs (N, C, H, W), no labels. Returns how many layers were refitted.
    Layers with ``groups > 1`` keep their k-means codebook.
    """
    parent, child = model_from_state(original, meta), model_from_state(compressed.state_dict(), meta)
    modules = dict(child.named_modules())
    layers = [k[: -len(".weight")] for k in compressed.shared
              if isinstance(modules.get(k[: -len(".weight")]), (nn.Conv2d, nn.Linear))
              and getattr(modules[k[: -len(".weight")]], "groups", 1) == 1]
    inputs: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Callable[[nn.Module, tuple], None]:
        def record(_module: nn.Module, args: tuple) -> None:
            inputs[name] = args[0].detach()
        return record

    def refit(name: str) -> Callable[[nn.Module, tuple], None]:
        def fit(module: nn.Module, args: tuple) -> None:
            moments = _Moments()
            for start in range(0, len(images), chunk):
                moments.add(_features(module, args[0][start:start + chunk]),
                            _features(module, inputs[name][start:start + chunk]))
            del inputs[name]
            weight = original[f"{name}.weight"].double().reshape(module.weight.shape[0], -1)
            bias_key = f"{name}.bias"
            n = moments.count
            mean_c, mean_o = moments.sum_c / n, moments.sum_o / n
            if bias_key not in compressed.raw:  # no bias to absorb the means: fit raw second moments
                mean_c = mean_o = torch.zeros_like(mean_c)
            cov = moments.cc / n - torch.outer(mean_c, mean_c)
            cross = (moments.co / n - torch.outer(mean_c, mean_o)) @ weight.t()
            shared = compressed.shared[f"{name}.weight"]
            codes = shared.code_map().reshape(weight.shape[0], -1)
            shared.codebook = least_squares_codebook(codes, cov, cross, shared.codebook, shared.frozen, ridge)
            new_weight = shared.decode()
            module.weight.copy_(new_weight)
            if bias_key in compressed.raw:
                target_mean = weight @ mean_o + original[bias_key].double()
                bias = target_mean - new_weight.double().reshape(weight.shape[0], -1) @ mean_c
                compressed.raw[bias_key] = bias.to(compressed.raw[bias_key].dtype)
                module.bias.copy_(compressed.raw[bias_key])
        return fit

    parent_modules = dict(parent.named_modules())
    handles = [parent_modules[n].register_forward_pre_hook(keep(n)) for n in layers]
    try:
        parent(images)
    finally:
        for handle in handles:
            handle.remove()
    handles = [modules[n].register_forward_pre_hook(refit(n)) for n in layers]
    try:
        child(images)
    finally:
        for handle in handles:
            handle.remove()
    return len(layers)


def distil_codebooks(compressed: CompressedModel, original: Mapping[str, torch.Tensor], meta: CheckpointMeta,
                     images: torch.Tensor, labels: torch.Tensor, epochs: int = 2, lr: float = 1e-3,
                     batch_size: int = 16, seed: int = 0) -> int:
    """Retrain the centroids of ``compressed`` in place (Sec. 3.3); returns the number of SGD steps.

    The loss is KL(parent || child) on images labelled -1 and cross-entropy on the others. Each
    step is :func:`~.sharing.finetune_codebook` on the weight gradients divided by the number of
    weights sharing their centroid (the mean, not the sum, of the shared gradient, so one ``lr``
    suits layers of any size), cosine-decayed to 0; the 0.0 of sparse layers is frozen.
    """
    if epochs < 1 or batch_size < 1 or len(images) == 0:
        raise SqueezelabError("fine-tuning needs at least one image, one epoch and a batch size of 1 or more")
    parent, child = model_from_state(original, meta), model_from_state(compressed.state_dict(), meta)
    with torch.no_grad():
        targets = torch.cat([parent(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
    params = dict(child.named_parameters())
    for param in params.values():
        param.requires_grad_(False)
    codes = {name: t.code_map() for name, t in compressed.shared.items()}
    counts = {name: torch.bincount(c.flatten(), minlength=compressed.shared[name].codebook.numel()).clamp(min=1)[c]
              for name, c in codes.items()}
    for name in compressed.shared:
        params[name].requires_grad_(True)
    generator = torch.Generator().manual_seed(seed)
    total = epochs * ((len(images) + batch_size - 1) // batch_size)
    step = 0
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), batch_size):
            rows = order[start:start + batch_size]
            logits = child(images[rows])
            known = labels[rows] >= 0
            soft = F.kl_div(F.log_softmax(logits[~known], 1), F.log_softmax(targets[rows][~known], 1),
                            log_target=True, reduction="sum")
            hard = F.cross_entropy(logits[known], labels[rows][known], reduction="sum") if bool(known.any()) else 0
            child.zero_grad(set_to_none=True)
            ((soft + hard) / len(rows)).backward()
            rate = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            with torch.no_grad():
                for name, shared in compressed.shared.items():
                    shared.codebook = finetune_codebook(shared.codebook, codes[name], params[name].grad / counts[name],
                                                        rate, shared.frozen)
                    params[name].copy_(shared.codebook[codes[name]])
            step += 1
    return step

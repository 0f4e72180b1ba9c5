"""Bias correction after pruning and weight sharing (Nagel et al. 2019, "Data-Free Quantization", Sec. 4.2).

Pruning and k-means shift each output channel's expected pre-activation by
``sum_c (sum_hw dW[o,c,h,w]) * E[x_c]`` where ``dW = W - W_shared`` and ``E[x_c]``
is the mean of input channel ``c``. Running the original model on a handful of
calibration images gives ``E[x_c]`` for every layer; adding the shift to the
bias removes it. No weight changes and no labels: the codes stay as they are,
only the fp32 biases stored in the ``.sqz`` change (and decode bit-exactly).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from PIL import Image
from torch import nn

from ..weights.checkpoint import CheckpointMeta
from .deep import CompressedModel


@torch.no_grad()
def input_channel_means(model: nn.Module, names: Sequence[str], images: torch.Tensor,
                        batch_size: int = 8) -> dict[str, torch.Tensor]:
    """Mean of every input channel (over images and positions) of the conv/linear modules ``names``."""
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    modules = dict(model.named_modules())

    def hook(name: str):
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
    model = meta.build_model()
    model.load_state_dict(dict(original))
    batch = torch.stack([meta.preprocess(image) for image in images])
    layers = [k[: -len(".weight")] for k in compressed.shared if f"{k[: -len('.weight')]}.bias" in compressed.raw]
    means = input_channel_means(model, layers, batch)
    for layer in layers:
        name = f"{layer}.weight"
        delta = original[name].double() - compressed.shared[name].decode().double()
        per_in = delta.reshape(delta.shape[0], delta.shape[1], -1).sum(dim=2)
        bias = compressed.raw[f"{layer}.bias"]
        compressed.raw[f"{layer}.bias"] = (bias.double() + per_in @ means[layer]).to(bias.dtype)
    return len(layers)

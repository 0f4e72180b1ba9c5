"""Magnitude pruning with masks that survive fine-tuning (Han et al. 2015, "Learning both Weights and
Connections"; Deep Compression Sec. 2).

Only conv and linear weights (tensors with 2+ dims) are pruned; biases are kept.
A mask is a bool tensor per weight name, True where the weight is kept. Masks
are saved as safetensors (uint8) so ``squeezelab train --prune-masks FILE`` (or
:class:`MaskKeeper` in your own loop) can re-apply them after every optimizer step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Literal, Mapping, Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save_file
from torch import nn

from ..errors import SqueezelabError
from ..io import PathLike, atomic_path, target_name

Masks = dict[str, torch.Tensor]


def prunable_names(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of conv/linear weights (floating tensors with 2+ dims), in state-dict order."""
    return [k for k, v in state.items() if v.dim() >= 2 and v.is_floating_point() and k.endswith("weight")]


def _check_density(density: float) -> None:
    if not 0.0 < density <= 1.0:
        raise SqueezelabError(f"density must be in (0, 1], got {density}; e.g. --density 0.33 keeps a third")


def _keep_top(values: torch.Tensor, keep: int) -> torch.Tensor:
    """Bool mask of the ``keep`` largest-magnitude entries (ties broken by position, so exact counts)."""
    flat = values.detach().abs().flatten()
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    if keep > 0:
        mask[torch.topk(flat, keep, sorted=False).indices] = True
    return mask.view_as(values)


def magnitude_masks(
    state: Mapping[str, torch.Tensor],
    density: Optional[float] = None,
    scope: Literal["layer", "global"] = "layer",
    names: Optional[Iterable[str]] = None,
) -> Masks:
    """Masks keeping the largest-magnitude weights.

    Args:
        state: state dict (or ``dict(model.named_parameters())``).
        density: fraction kept (``None``: keep exactly the nonzeros, i.e. re-use an existing pruning).
        scope: ``"layer"`` keeps ``density`` of every layer; ``"global"`` uses one magnitude threshold
            for the whole model (small layers may then be pruned harder or softer).
        names: weights to prune (default: every conv/linear weight).
    """
    names = list(names) if names is not None else prunable_names(state)
    if density is None:
        return {n: state[n].detach() != 0 for n in names}
    _check_density(density)
    if scope == "layer":
        return {n: _keep_top(state[n], round(density * state[n].numel())) for n in names}
    if scope != "global":
        raise SqueezelabError(f"unknown pruning scope {scope!r}; use 'layer' or 'global'")
    flat = torch.cat([state[n].detach().abs().flatten() for n in names])
    mask = _keep_top(flat, round(density * flat.numel()))
    out, start = {}, 0
    for n in names:
        size = state[n].numel()
        out[n] = mask[start:start + size].view_as(state[n])
        start += size
    return out


def check_masks(masks: Mapping[str, torch.Tensor], tensors: Mapping[str, torch.Tensor]) -> None:
    """A one-line error unless every mask names a weight of ``tensors`` and has its shape."""
    for name, mask in masks.items():
        if name not in tensors:
            raise SqueezelabError(f"mask {name!r} matches no weight of the model; the masks belong to another model")
        if tensors[name].shape != mask.shape:
            raise SqueezelabError(f"mask {name!r} has shape {tuple(mask.shape)}, weight has "
                                  f"{tuple(tensors[name].shape)}; the masks belong to another model")


def apply_masks(target: nn.Module | dict[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the pruned weights in place (a model's parameters or a state dict's tensors)."""
    tensors = dict(target.named_parameters()) if isinstance(target, nn.Module) else target
    check_masks(masks, tensors)
    with torch.no_grad():
        for name, mask in masks.items():
            tensors[name].mul_(mask.to(tensors[name].device, tensors[name].dtype))


class MaskKeeper:
    """Keeps pruned weights at zero during fine-tuning.

    Call it after every ``optimizer.step()`` (it re-applies the masks, so momentum
    and weight decay cannot revive a pruned weight), or use :meth:`attach` to also
    zero the pruned gradients with tensor hooks.
    """

    def __init__(self, model: nn.Module, masks: Mapping[str, torch.Tensor]):
        self.model = model
        self.masks = dict(masks)
        apply_masks(model, self.masks)
        self._handles: list = []

    def attach(self) -> "MaskKeeper":
        params = dict(self.model.named_parameters())
        for name, mask in self.masks.items():
            keep = mask.to(params[name].device, params[name].dtype)
            self._handles.append(params[name].register_hook(lambda g, keep=keep: g * keep))
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __call__(self, *_args, **_kwargs) -> None:
        apply_masks(self.model, self.masks)


class ApplyMasks:
    """``after_step`` callback for :class:`squeezelab.train` configs: re-zero the pruned weights of the
    model it is given (a DistributedDataParallel wrapper is unwrapped)."""

    def __init__(self, masks: Mapping[str, torch.Tensor]):
        self.masks = dict(masks)

    def __call__(self, model: nn.Module) -> None:
        apply_masks(getattr(model, "module", model), self.masks)


def save_masks(path: PathLike, masks: Mapping[str, torch.Tensor]) -> None:
    """Write masks as a safetensors file of uint8 tensors (atomic)."""
    with atomic_path(path) as tmp:
        try:
            save_file({k: v.to(torch.uint8).contiguous() for k, v in masks.items()}, str(tmp),
                      metadata={"format": "squeezelab-masks/1"})
        except SafetensorError as exc:  # safetensors reports write errors (disk full, EFBIG) as its own type
            raise SqueezelabError(f"cannot write {target_name(path)}: {exc}; nothing was written there") from None


def load_masks(path: PathLike) -> Masks:
    """Read masks written by :func:`save_masks`."""
    try:
        data = Path(path).read_bytes()  # PermissionError: the CLI's one line naming the path
    except (FileNotFoundError, IsADirectoryError):
        raise SqueezelabError(f"mask file {path} does not exist or is a folder") from None
    try:
        raw = load(data)
    except (SafetensorError, ValueError) as exc:
        raise SqueezelabError(f"{path} is not a readable mask file ({exc}); write one with "
                              "'squeezelab compress ... --save-masks FILE'") from None
    return {k: v.bool() for k, v in raw.items()}

"""Checks that run before a training run builds or writes anything: option values, the run directory, input size.

The input-size check bounds memory before any allocation: it reads the layer
sizes from the layer trace (:func:`squeezelab.models.trace`) and compares the
activations of a training and an evaluation batch with the free memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Collection

import torch
from torch import nn

from ..cpu import available_memory
from ..data.datasets import own_validation_split
from ..errors import SqueezelabError
from ..io import check_output
from ..models.tracing import BLOCK, trace
from .config import AMP_MODES, DATA_LOADERS, OPTIMIZERS, RECIPES, SCHEDULES, TrainConfig
from .state import STATE_FILE, is_run_dir


def validate_config(cfg: TrainConfig) -> None:
    """One-line errors for option values no run can use (the CLI's argparse types catch most first)."""
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise SqueezelabError(f"--epochs and --batch-size must be >= 1, got {cfg.epochs} and {cfg.batch_size}")
    if cfg.threads is not None and cfg.threads < 1:
        raise SqueezelabError(f"--threads must be >= 1, got {cfg.threads}")
    if cfg.stop_after is not None and cfg.stop_after < 1:
        raise SqueezelabError(f"--stop-after must be >= 1, got {cfg.stop_after}")
    if cfg.input_size is not None and cfg.input_size < 1:
        raise SqueezelabError(f"--input-size must be >= 1, got {cfg.input_size}")
    if cfg.grad_clip is not None and not cfg.grad_clip > 0:
        raise SqueezelabError(f"--grad-clip must be > 0, got {cfg.grad_clip}")
    if cfg.lr is not None and not cfg.lr > 0:
        raise SqueezelabError(f"--lr must be > 0, got {cfg.lr}")
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise SqueezelabError(f"--label-smoothing must be in [0, 1), got {cfg.label_smoothing}")
    if cfg.amp not in AMP_MODES:
        raise SqueezelabError(f"--amp must be one of {', '.join(AMP_MODES)}, got {cfg.amp!r}")
    if cfg.resume and cfg.overwrite:
        raise SqueezelabError("--resume continues a run and --overwrite replaces it; pass one of them")
    if cfg.schedule not in SCHEDULES:
        raise SqueezelabError(f"unknown schedule {cfg.schedule!r}; use one of {', '.join(SCHEDULES)}")
    if cfg.optimizer not in OPTIMIZERS:
        raise SqueezelabError(f"unknown optimizer {cfg.optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
    if cfg.recipe not in RECIPES:
        raise SqueezelabError(f"unknown recipe {cfg.recipe!r}; use one of {', '.join(RECIPES)}")
    if cfg.data_loader not in DATA_LOADERS:
        raise SqueezelabError(f"unknown data loader {cfg.data_loader!r}; use one of {', '.join(DATA_LOADERS)}")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise SqueezelabError(f"--ema-decay must be in [0, 1) (0: no averaging), got {cfg.ema_decay}")
    if cfg.swa and cfg.ema_decay > 0:
        raise SqueezelabError("--swa and --ema-decay both average the weights (uniformly and exponentially); "
                              "pass one of them")
    if cfg.whiten_stem and cfg.pretrained:
        raise SqueezelabError("--whiten-stem initialises the stem of a network trained from scratch, and "
                              "--pretrained brings trained weights; pass one of them")
    if cfg.cutout < 0 or cfg.eval_every < 1:
        raise SqueezelabError(f"--cutout must be >= 0 and --eval-every >= 1, got {cfg.cutout} and {cfg.eval_every}")
    if (cfg.derandomized_flips or cfg.cutout) and cfg.data_loader == "samples":
        raise SqueezelabError("--derandomized-flips and --cutout need the batched loader: drop them or pass "
                              "--data-loader batched (inputs of at most 64 px)")


def check_val_fraction(cfg: TrainConfig, explicit: Collection[str]) -> None:
    """A ``val_fraction`` set on purpose for data that brings its own validation split is an error, not a
    silent no-op: the run would validate (and pick ``best.safetensors``) on that split, not on held-out
    training images."""
    if "val_fraction" not in explicit:
        return
    split = own_validation_split(cfg.data)
    if split is not None:
        raise SqueezelabError(f"--val-fraction splits digits and image folders without val/, but {cfg.data} "
                              f"validates on {split}; drop --val-fraction (--val-limit validates on a subset)")


def check_run_dir(cfg: TrainConfig, run_dir: Path) -> None:
    """Before any work: the run directory can be written, and a new run replaces an old one only on request."""
    check_output(run_dir, kind="dir", what="run directory")
    if not cfg.resume and not cfg.overwrite and is_run_dir(run_dir):
        if not (run_dir / STATE_FILE).is_file():
            raise SqueezelabError(f"{run_dir} holds the config of a run that never saved a state, so it cannot be "
                                  f"resumed; pass --overwrite to replace it, or choose another --output")
        raise SqueezelabError(f"{run_dir} holds a training run already; continue it with --resume {run_dir}, "
                              f"pass --overwrite to replace it, or choose another --output")


def _activation_elements(model: nn.Module, in_chans: int, size: int) -> tuple[int, int]:
    """(sum, max) of the activation sizes of one ``size`` px image: the input and every layer's output,
    from the layer trace (shapes only, no arithmetic, nothing trained, no RNG drawn)."""
    sizes = [in_chans * size * size] + [layer.elements for layer in trace(model, size, in_chans=in_chans)
                                        if layer.module and layer.kind != BLOCK]
    return sum(sizes), max(sizes)


def check_input_size(model: nn.Module, in_chans: int, size: int, batch: int, device: torch.device,
                     processes: int = 1) -> None:
    """A one-line error when ``size`` is below the model's minimum or its activations would not fit in memory.

    The estimate counts float32 activations kept for the backward pass (every layer's output, ``batch``
    images per process) and the evaluation batch's two widest layers; it is a lower bound on the need.
    Call it before the model moves to its device.
    """
    if size < model.min_input_size:
        raise SqueezelabError(f"--input-size {size} is below this model's minimum of {model.min_input_size} px; "
                              f"raise --input-size")
    total, widest = _activation_elements(model, in_chans, size)
    need = 4 * processes * max(batch * total, 2 * max(batch, 256) * widest)
    free = available_memory(device)
    if need > free:
        raise SqueezelabError(f"--input-size {size} with batch {batch} needs about {need / 2**30:.1f} GiB for "
                              f"activations but {device.type} has {free / 2**30:.1f} GiB free; lower --input-size "
                              f"or --batch-size")

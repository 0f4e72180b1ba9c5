"""The training loop: single process or DistributedDataParallel under torchrun.

In parts, as in timm: :func:`train` is the driver; it validates everything,
sets up (or restores) data, model and optimizer, then alternates
:func:`train_one_epoch` and the shared top-k loop
:func:`~squeezelab.evaluation.evaluate_model`, and hands every write to a
:class:`~squeezelab.train.state.CheckpointSaver`. What it checks before
building anything is in :mod:`~squeezelab.train.checks`; what ``--resume``
takes from the saved run is in :mod:`~squeezelab.train.resume`. The run
directory (``docs/training.md``)::

    RUN/config.json          the configuration
    RUN/state.pt             full training state for --resume (weights_only loadable)
    RUN/last.safetensors     model after the last finished epoch (native checkpoint)
    RUN/best.safetensors     model with the best val top-1 so far
    RUN/metrics.json|csv     per-epoch metrics
    RUN/curves.png           loss and accuracy curves
    RUN/prune_masks.safetensors  the --prune-masks of a pruned retrain, re-applied on resume

Nothing is written before the first checkpoint or interruption, so bad input
leaves no directory behind. Determinism: the sample order depends on (seed,
epoch, rank), each sample's augmentation is seeded by (seed, epoch, index), and
the RNG states are saved with the model, so a run interrupted (or stopped with
``stop_after``) and resumed reproduces the uninterrupted run bit for bit on CPU.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any, Collection, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ..compress.prune import apply_masks, load_masks
from ..cpu import cpu_bf16_fast, keep_freed_memory
from ..data.batched import BatchedAugment, BatchedEpoch, DecodedImages, Normalizer
from ..data.datasets import (SKIPPED_LABEL, SMALL_INPUT_MAX, DatasetBundle, EpochSampler, PadCropFlip, build_datasets,
                             check_readable, parse_data_source)
from ..data.fingerprint import check_same_data
from ..data.preprocess import Preprocess
from ..errors import SqueezelabError
from ..evaluation import EvalResult, evaluate_model
from ..models import create_model, get_model_entry
from ..weights.checkpoint import CheckpointMeta
from ..weights.loader import load_weights, model_from_state
from .checks import check_input_size, check_run_dir, check_val_fraction, validate_config
from .config import ADAMW_SOLVER, DEFAULT_WEIGHT_DECAY, SQUEEZENET_SOLVER, SQUEEZENEXT_SOLVER, TrainConfig
from .averaging import WeightAverage
from .logs import Progress
from .recipe import recompute_bn_statistics, warmup_steps
from .resume import explicit_fields, resume_config
from .state import MASKS_FILE, STATE_FILE, CheckpointSaver, capture_rng, load_state, locked_run_dir, restore_rng
from .whitening import whiten_first_convolution, whitening_images

__all__ = ["EvalResult", "LoopState", "Solver", "TrainResult", "TrainingRun", "choose_amp", "default_lr",
           "evaluate_model", "has_batchnorm", "lr_factor", "make_optimizer", "precision_label", "resolve_optimizer",
           "resolve_solver", "train", "train_one_epoch"]

def resolve_optimizer(name: str, batchnorm: bool) -> str:
    """``auto`` -> SGD with momentum for BatchNorm networks (the papers' solver), AdamW without BatchNorm.

    SqueezeNet has no normalisation: SGD's stable rate is so low (0.005 at batch 64) that it
    learns slowly, and twice that rate stalls or diverges (docs/small-inputs.md). AdamW's
    per-parameter step sizes do not depend on each layer's gradient scale; on issue 15's
    5-epoch Fashion-MNIST protocol it lifted squeezenet1_1 from 53-73% to 78-83% (docs/training.md).
    With BatchNorm, SGD trained sqnxt23_w1 better (75% against 67%, same protocol).
    """
    if name == "auto":
        return "sgd" if batchnorm else "adamw"
    return name


def default_lr(batchnorm: bool, batch: int, optimizer: str = "sgd") -> float:
    """The base LR for a total batch of ``batch`` images.

    SGD without BatchNorm (SqueezeNet): the Caffe solver's rate, scaled linearly with the
    batch: these networks diverge or stall at higher rates (docs/small-inputs.md).
    SGD with BatchNorm (SqueezeNext and the chapter's networks): the rate scales with the
    square root of the batch (Krizhevsky 2014; Hoffer et al. 2017): linear scaling
    from batch 1024 leaves 0.025 at batch 64, which reached 31% on digits in 6 epochs
    where 0.1 reached 83% (docs/training.md, "Recipe"). AdamW: :data:`ADAMW_SOLVER`, with the
    same square-root rule.
    """
    if optimizer == "adamw":
        rate, reference = ADAMW_SOLVER
        return rate * math.sqrt(batch / reference)
    if batchnorm:
        rate, reference = SQUEEZENEXT_SOLVER
        return rate * math.sqrt(batch / reference)
    rate, reference = SQUEEZENET_SOLVER
    return rate * batch / reference


@dataclass(frozen=True)
class Solver:
    """The optimizer settings a run trains with once the recipe's rules have filled in ``optimizer="auto"``,
    ``lr=None`` and ``weight_decay=None``."""

    optimizer: str
    lr: float
    weight_decay: float


def resolve_solver(cfg: TrainConfig, batchnorm: bool, world_size: int = 1) -> Solver:
    """``cfg``'s optimizer, base LR (for the total batch over ``world_size`` processes) and weight decay."""
    cfg = cfg.with_recipe()
    name = resolve_optimizer(cfg.optimizer, batchnorm)
    lr = cfg.lr if cfg.lr is not None else default_lr(batchnorm, cfg.batch_size * world_size, name)
    weight_decay = cfg.weight_decay if cfg.weight_decay is not None else DEFAULT_WEIGHT_DECAY[name]
    return Solver(name, lr, weight_decay)


def make_optimizer(name: str, model: nn.Module, lr: float, weight_decay: float,
                   momentum: float, nesterov: bool = False) -> torch.optim.Optimizer:
    """SGD with momentum (Nesterov's if ``nesterov``) or AdamW (betas 0.9/0.999), with no weight decay on 1-D
    parameters; ``nesterov`` is an SGD option and AdamW ignores it."""
    groups = _param_groups(model, weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    best_top1: float
    history: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    #: stopped by ``stop_after`` before the planned epochs; ``resume`` continues the same schedule.
    stopped: bool = False

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device_kind: str) -> _Dist:
    """Join the torchrun process group (gloo on CPU, nccl on CUDA) when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _device(cfg: TrainConfig, ddp: _Dist) -> torch.device:
    name = cfg.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SqueezelabError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
        return torch.device("cuda", ddp.local_rank if ddp.enabled else torch.device(name).index or 0)
    if name != "cpu":
        raise SqueezelabError(f"unknown device {cfg.device!r}; use auto, cpu or cuda[:N]")
    return torch.device("cpu")


def choose_amp(amp: str, device: torch.device, bf16_fast: Optional[bool] = None) -> tuple[Optional[torch.dtype], str]:
    """The autocast dtype for ``--amp auto|on|off`` on ``device`` (None: FP32) and why it was chosen.

    CUDA: bf16 where the GPU supports it, else fp16 (with a GradScaler). CPU: bf16, which
    ``auto`` picks only where it is fast (``bf16_fast``, default :func:`squeezelab.cpu.cpu_bf16_fast`:
    AVX512-BF16 or AMX, with PyTorch's kernels not capped below AVX-512). Elsewhere BF16 is
    emulated and slower than FP32, so ``auto`` stays FP32 and ``on`` still forces it.
    """
    if amp == "off":
        return None, "--amp off"
    if device.type == "cuda":
        return (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16), f"--amp {amp}, CUDA"
    if amp == "on":
        return torch.bfloat16, "--amp on"
    if bf16_fast if bf16_fast is not None else cpu_bf16_fast():
        return torch.bfloat16, "auto: native BF16 on this CPU"
    return None, "auto: no native BF16 on this CPU (or kernels capped below AVX-512)"


def precision_label(amp_dtype: Optional[torch.dtype]) -> str:
    """How the training step computes, for the log: ``fp32``, ``bf16 autocast`` or ``fp16 autocast``."""
    return "fp32" if amp_dtype is None else {torch.bfloat16: "bf16", torch.float16: "fp16"}[amp_dtype] + " autocast"


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` normalises with BatchNorm: it picks the optimizer, LR rule and warmup (``recipe``)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _create(name: str, num_classes: int, in_chans: int, kwargs: dict[str, Any]) -> nn.Module:
    return create_model(name, num_classes=num_classes, in_chans=in_chans, **kwargs)


def _model_kwargs(cfg: TrainConfig, input_size: int) -> dict[str, Any]:
    """User overrides, plus ``small_input=True`` for inputs of 64 px or less on models that have the option."""
    kwargs = dict(cfg.model_kwargs)
    if "small_input" not in kwargs and input_size <= SMALL_INPUT_MAX and get_model_entry(cfg.model).small_input:
        kwargs["small_input"] = True
    return kwargs


def _load_pretrained(cfg: TrainConfig) -> Optional[tuple[dict[str, torch.Tensor], CheckpointMeta]]:
    """The state dict and pretrained config of ``--pretrained``: registered weights or any weights file."""
    if not cfg.pretrained:
        return None
    state, meta = load_weights(cfg.pretrained)
    if get_model_entry(cfg.model).name != meta.architecture:
        raise SqueezelabError(f"--pretrained {cfg.pretrained} holds {meta.architecture} weights, not "
                              f"{get_model_entry(cfg.model).name}; train {meta.architecture} or pick other weights")
    return state, meta


def _build_model(cfg: TrainConfig, bundle: DatasetBundle,
                 pretrained: Optional[tuple[dict[str, torch.Tensor], CheckpointMeta]]
                 ) -> tuple[nn.Module, dict[str, Any], str]:
    """The model, its create_model overrides and a note on how it was initialised."""
    if cfg.num_classes is not None and cfg.num_classes != bundle.num_classes:
        raise SqueezelabError(f"--num-classes {cfg.num_classes} does not match the {bundle.num_classes} classes of "
                              f"{bundle.source}; drop --num-classes or fix the data")
    if pretrained is None:
        kwargs = _model_kwargs(cfg, bundle.input_size)
        return _create(cfg.model, bundle.num_classes, bundle.in_chans, kwargs), kwargs, "random initialisation"
    state, meta = pretrained
    model = model_from_state(state, meta, what=f"--pretrained {cfg.pretrained}", **cfg.model_kwargs).train()
    kwargs = model.pretrained_cfg.model_kwargs
    note = f"fine-tuned from {cfg.pretrained}"
    if meta.num_classes != bundle.num_classes:
        model.reset_classifier(bundle.num_classes)
        note += f" with a new {bundle.num_classes}-class classifier (the weights had {meta.num_classes})"
    return model, kwargs, note


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and BatchNorm parameters (1-D tensors)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Multiplier of the base LR at ``step``: linear warmup from 1/warmup, then cosine or poly (power 1) to 0,
    or constant.

    Poly is the SqueezeNet Caffe solver's ``lr_policy: "poly"`` with ``power: 1``;
    cosine is SGDR without restarts (Loshchilov & Hutter 2017), as in SqueezeNext's recipe;
    constant is the rate of stochastic weight averaging's last phase (Izmailov et al. 2018, section 3.2).
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "poly":
        return 1.0 - progress
    if schedule == "constant":
        return 1.0
    raise SqueezelabError(f"unknown schedule {schedule!r}; use cosine, poly or constant")


def _loader(dataset: Dataset, batch_size: int, sampler: Optional[Sampler], workers: int, device: torch.device,
            seed: int) -> DataLoader:
    """A loader with its own generator, so starting an epoch draws nothing from the global RNG (exact resume)."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=device.type == "cuda", drop_last=False, generator=torch.Generator().manual_seed(seed))


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop checkpoints after the current step and returns."""

    def __init__(self) -> None:
        self.stop = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        self.stop = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _log(ddp: _Dist, message: str) -> None:
    if ddp.is_main:
        print(message, flush=True)


def _warn(ddp: _Dist, warning: Optional[str]) -> None:
    """``squeezelab: warning: ...`` on stderr (as the CLI warns), on the main process, if there is a warning."""
    if warning and ddp.is_main:
        print(f"squeezelab: warning: {warning}", file=sys.stderr, flush=True)


def _freeze_features(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.get_classifier().parameters():
        p.requires_grad_(True)


def _set_train_mode(model: nn.Module, frozen: bool) -> None:
    """Train mode, except that BatchNorm layers with frozen parameters keep their running statistics."""
    model.train()
    if frozen:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
                m.eval()


def _resolve_run_dir(cfg: TrainConfig) -> Path:
    if not cfg.resume:
        return Path(cfg.output or f"runs/{get_model_entry(cfg.model).name}")
    resume = Path(cfg.resume)
    run_dir = resume.parent if resume.is_file() else resume
    if cfg.output and Path(cfg.output).resolve() != run_dir.resolve():
        raise SqueezelabError(f"--output {cfg.output} differs from the resumed run {run_dir}; a resumed run "
                              f"writes into its own directory, so drop --output")
    return run_dir


def _load_masks(cfg: TrainConfig, run_dir: Path, resumed: bool, model: nn.Module) -> Optional[dict[str, torch.Tensor]]:
    """The pruning masks of the run: ``--prune-masks FILE`` for a new run, the run's own copy on resume."""
    if not cfg.prune_masks:
        return None
    path = run_dir / MASKS_FILE if resumed else Path(cfg.prune_masks)
    if not path.is_file():
        hint = f"the run was pruned with {cfg.prune_masks}, but its copy is gone" if resumed else "no such file"
        raise SqueezelabError(f"pruning masks {path}: {hint}")
    masks = load_masks(path)
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        if name not in params or params[name].shape != mask.shape:
            found = f"shape {tuple(params[name].shape)}" if name in params else "no such tensor"
            raise SqueezelabError(f"pruning mask {name} {tuple(mask.shape)} of {path} does not fit {cfg.model} "
                                  f"({found}); were the masks made for another model?")
    return masks


@dataclass
class TrainingRun:
    """What the epoch loop needs, built once by :func:`_setup` before anything is written."""

    cfg: TrainConfig
    ddp: _Dist
    device: torch.device
    bundle: DatasetBundle
    model: nn.Module
    net: nn.Module
    model_kwargs: dict[str, Any]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    use_amp: bool
    amp_dtype: torch.dtype
    #: the log's precision note, e.g. ``bf16 autocast (auto: native BF16 on this CPU)``
    precision: str
    steps_per_epoch: int
    workers: int
    masks: Optional[dict[str, torch.Tensor]]
    init_note: str
    #: the training images kept decoded, with their augmentation (``data_loader="batched"``)
    decoded: Optional[DecodedImages] = None
    augment: Optional[BatchedAugment] = None
    normalize: Optional[Normalizer] = None
    #: the weight average that is evaluated and saved (``ema_decay > 0`` or ``swa``)
    average: Optional[WeightAverage] = None
    #: whether the run has warned that it zeroed non-finite gradient entries (:func:`zero_nonfinite_gradients`)
    nonfinite_gradients_noted: bool = False

    @property
    def evaluated(self) -> nn.Module:
        """The model that is evaluated and checkpointed: the weight average if there is one."""
        return self.average.module if self.average is not None else self.model

    @property
    def base_lr(self) -> float:
        """The scheduler's base rate: the one the run started with, also when a resumed run's ``lr=None`` would
        now resolve to another default."""
        return self.scheduler.base_lrs[0]


def _zero_running() -> dict[str, float]:
    return {"loss": 0.0, "correct": 0.0, "count": 0.0, "skipped": 0.0, "seconds": 0.0}


@dataclass
class LoopState:
    """The counters and sums that the loop advances and ``state.pt`` records."""

    epoch: int = 0
    step: int = 0
    epoch_step: int = 0
    running: dict[str, float] = field(default_factory=_zero_running)
    history: list[dict[str, Any]] = field(default_factory=list)
    best_top1: float = -1.0

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "LoopState":
        return cls(int(state["epoch"]), int(state["step"]), int(state["epoch_step"]),
                   {k: float(v) for k, v in state["running"].items()}, [dict(row) for row in state["history"]],
                   float(state["best_top1"]))


def _state_dict(run: TrainingRun, loop: LoopState) -> dict[str, Any]:
    """Everything ``--resume`` needs, at the loop's current position."""
    return {
        "format": "squeezelab-train-state/1", "config": run.cfg.to_dict(), "model_kwargs": run.model_kwargs,
        "num_classes": run.bundle.num_classes, "in_chans": run.bundle.in_chans, "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(), "rng": capture_rng(), "epoch": loop.epoch, "step": loop.step,
        "epoch_step": loop.epoch_step, "running": dict(loop.running), "history": loop.history,
        "best_top1": loop.best_top1, "data_fingerprint": run.bundle.fingerprint,
        # "ema": the key since the first averaged runs (before --swa), so their state.pt still resumes
        **({"ema": run.average.state_dict()} if run.average is not None else {}),
    }


def _build_data(cfg: TrainConfig, resume_state: Optional[dict[str, Any]], in_chans: Optional[int],
                pretrained: Optional[Preprocess]) -> DatasetBundle:
    """The run's datasets; on resume, refused unless they are the run's own data (its fingerprint)."""
    if resume_state is not None:
        location = parse_data_source(cfg.data).location
        if location and not Path(location).exists():
            raise SqueezelabError(f"cannot resume: the run's data {location} does not exist; if it moved, pass "
                                  f"--data with its new path")
    bundle = build_datasets(cfg.data, cfg.input_size, in_chans=in_chans, augment=cfg.augment,
                            val_fraction=cfg.val_fraction, train_limit=cfg.train_limit, val_limit=cfg.val_limit,
                            seed=cfg.seed if cfg.data_seed is None else cfg.data_seed, pretrained=pretrained)
    if resume_state is not None:
        check_same_data(resume_state.get("data_fingerprint"), bundle.fingerprint, cfg.data,
                        parse_data_source(resume_state["config"]["data"]).absolute())
    return bundle


def _setup(cfg: TrainConfig, ddp: _Dist, device: torch.device, resume_state: Optional[dict[str, Any]],
           run_dir: Path) -> TrainingRun:
    """Data, model, optimizer and schedule; on resume the saved weights and optimizer state, not yet the RNG."""
    torch.manual_seed(cfg.seed)
    if resume_state is not None and "in_chans" in resume_state:  # the run's weights replace --pretrained's
        pretrained, in_chans = None, int(resume_state["in_chans"])
    else:
        pretrained = _load_pretrained(cfg)
        in_chans = cfg.in_chans or (pretrained[1].in_chans if pretrained else None)
    bundle = _build_data(cfg, resume_state, in_chans, pretrained[1].preprocess if pretrained else None)
    if resume_state is not None:
        if int(resume_state["num_classes"]) != bundle.num_classes:
            raise SqueezelabError(f"cannot resume: the run had {resume_state['num_classes']} classes, "
                                  f"{bundle.source} has {bundle.num_classes}")
        pretrained = None
    model, model_kwargs, init_note = _build_model(cfg, bundle, pretrained)
    if cfg.whiten_stem and resume_state is None:
        init_note += ", " + whiten_first_convolution(model, whitening_images(bundle.train, bundle.preprocess))
    if resume_state is not None:
        model_kwargs = dict(resume_state["model_kwargs"])
        model = _create(cfg.model, bundle.num_classes, bundle.in_chans, model_kwargs)
        model.load_state_dict(resume_state["model"])
        init_note = f"resumed from {run_dir / STATE_FILE}"
    check_input_size(model, bundle.in_chans, bundle.input_size, cfg.batch_size, device,
                     ddp.world_size if device.type == "cpu" else 1)
    masks = _load_masks(cfg, run_dir, resume_state is not None, model)
    if masks is not None:
        apply_masks(model, masks)
        init_note += f", {len(masks)} pruning masks kept"
    if cfg.freeze_features:
        _freeze_features(model)

    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    chosen, why = choose_amp(cfg.amp, device)
    use_amp, amp_dtype = chosen is not None, chosen or torch.bfloat16
    precision = f"{precision_label(chosen)} ({why})"
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)
    batchnorm = has_batchnorm(model)
    solver = resolve_solver(cfg, batchnorm, ddp.world_size)
    optimizer = make_optimizer(solver.optimizer, model, solver.lr, solver.weight_decay, cfg.momentum, cfg.nesterov)
    steps_per_epoch = math.ceil(math.ceil(len(bundle.train) / ddp.world_size) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = warmup_steps(cfg.warmup_epochs, steps_per_epoch, total_steps, batchnorm)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, warmup, cfg.schedule))
    if resume_state is not None:
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        scaler.load_state_dict(resume_state["scaler"])
    net: nn.Module = model
    if ddp.enabled:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    workers = cfg.workers if cfg.workers is not None else (min(8, os.cpu_count() or 1) if device.type == "cuda" else 0)
    run = TrainingRun(cfg, ddp, device, bundle, model, net, model_kwargs, optimizer, scheduler, scaler, use_amp,
                      amp_dtype, precision, steps_per_epoch, workers, masks, init_note)
    if cfg.data_loader == "batched" or (cfg.data_loader == "auto" and _batchable(bundle)):
        _setup_batched_data(run)
    elif cfg.cutout:
        raise SqueezelabError(f"--cutout needs the batched loader, which keeps images of at most {SMALL_INPUT_MAX} px "
                              f"decoded; {bundle.source} trains at {bundle.input_size} px, so drop --cutout")
    elif cfg.derandomized_flips:
        run.init_note += f", random flips (derandomized flips need inputs of at most {SMALL_INPUT_MAX} px)"
    if cfg.ema_decay > 0 or cfg.swa:
        run.average = WeightAverage(model, None if cfg.swa else cfg.ema_decay)
        if resume_state is not None and "ema" in resume_state:
            run.average.load_state_dict(resume_state["ema"])
    return run


def _batchable(bundle: DatasetBundle) -> bool:
    """Whether the batched loader can serve ``bundle``: small inputs with no augmentation or pad-crop-flip."""
    augment = bundle.train.transform.augment
    return bundle.input_size <= SMALL_INPUT_MAX and (augment is None or isinstance(augment, PadCropFlip))


def _setup_batched_data(run: TrainingRun) -> None:
    """Decode the training images once and set up their batch augmentation (``data_loader="batched"``)."""
    bundle, cfg = run.bundle, run.cfg
    augment = bundle.train.transform.augment
    if not _batchable(bundle):
        raise SqueezelabError(f"--data-loader batched keeps images of at most {SMALL_INPUT_MAX} px decoded; "
                              f"{bundle.source} trains at {bundle.input_size} px, so use --data-loader samples")
    run.normalize = Normalizer(bundle.preprocess)
    run.decoded = DecodedImages.from_dataset(bundle.train, bundle.input_size, bundle.in_chans)
    skipped = int((run.decoded.labels == SKIPPED_LABEL).sum())
    _warn(run.ddp, check_readable(len(bundle.train) - skipped, skipped, "training images", bundle.source))
    if augment is not None:
        flip = "none" if not augment.flip else ("derandomized" if cfg.derandomized_flips else "random")
        run.augment = BatchedAugment(bundle.input_size, translate=augment.padding > 0, flip=flip,
                                     cutout=cfg.cutout, fill=run.normalize.mean_pixels)


def _reschedule(run: TrainingRun) -> tuple[float, float]:
    """Move the optimizer's LR onto the (new) schedule at the current step; returns (old, new) LR."""
    old = run.optimizer.param_groups[0]["lr"]
    for group, base in zip(run.optimizer.param_groups, run.scheduler.base_lrs):
        group["lr"] = base * run.scheduler.lr_lambdas[0](run.scheduler.last_epoch)
    run.scheduler._last_lr = [group["lr"] for group in run.optimizer.param_groups]
    return old, run.optimizer.param_groups[0]["lr"]


def zero_nonfinite_gradients(model: nn.Module) -> int:
    """Zero the NaN and infinite entries of ``model``'s gradients; returns how many there were.

    Called after a step whose loss was finite (a diverged loss stops the run first). PyTorch's
    oneDNN bf16 backward-weights kernel on AVX-512 CPUs sometimes returns NaN for the taps of a
    stride-2 3x3 convolution on a 1x1 input, taps that only see padding and whose true gradient
    is zero, while every output stays finite (docs/reliability.md, "Non-finite gradients").
    """
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    # one sum per tensor screens every step; a sum that overflows only sends it to the exact check below
    if not grads or bool(torch.isfinite(torch.stack([g.sum() for g in grads])).all()):
        return 0
    repaired = 0
    for grad in grads:
        bad = ~torch.isfinite(grad)
        if bad.any():
            repaired += int(bad.sum())
            grad.masked_fill_(bad, 0.0)
    return repaired


def train_one_epoch(run: TrainingRun, loop: LoopState, stop: _StopFlag, saver: CheckpointSaver) -> bool:
    """Train epoch ``loop.epoch`` from step ``loop.epoch_step``; True when a signal stopped it (state saved)."""
    cfg, ddp, device, epoch = run.cfg, run.ddp, run.device, loop.epoch
    sampler = EpochSampler(run.bundle.train, seed=cfg.seed, epoch=epoch, rank=ddp.rank, world_size=ddp.world_size,
                           start=loop.epoch_step * cfg.batch_size)
    if run.decoded is not None and run.normalize is not None:
        plan = run.augment.plan(len(run.decoded), cfg.seed, epoch) if run.augment is not None else None
        loader: Any = BatchedEpoch(run.decoded, list(sampler.inner), cfg.batch_size, run.normalize,
                                   augment=run.augment, plan=plan, channels_last=cfg.channels_last,
                                   start=loop.epoch_step)
    else:
        loader = _loader(run.bundle.train, cfg.batch_size, sampler, run.workers, device, cfg.seed * 1000 + epoch)
    _set_train_mode(run.model, cfg.freeze_features)
    progress = Progress(cfg.progress and ddp.is_main, run.steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}")
    running = loop.running
    # The epoch's loss and top-1 sums stay on the device (no host sync per step); they continue from the
    # saved running sums, so an interrupted and resumed epoch adds in the same order as an uninterrupted one.
    sums = torch.tensor([running["loss"], running["correct"]], dtype=torch.float64, device=device)
    tic = time.perf_counter()
    seen = 0
    interrupted = False
    for images, labels in loader:
        n_valid = int((labels != SKIPPED_LABEL).sum())  # on the host copy: no device sync
        running["skipped"] += len(labels) - n_valid
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        if cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=run.amp_dtype, enabled=run.use_amp):
            logits = run.net(images)
            loss = F.cross_entropy(logits.float(), labels, ignore_index=SKIPPED_LABEL,
                                   label_smoothing=cfg.label_smoothing)
        if n_valid == 0:
            loss = logits.sum() * 0.0
        bad = torch.tensor([0.0 if torch.isfinite(loss) else 1.0, 1.0 if stop.stop else 0.0])
        if ddp.enabled:
            dist.all_reduce(bad)
        if bad[0] > 0:
            progress.close()
            kept_note = f"the last good checkpoint {saver.last} was kept" if saver.has_checkpoint else \
                "no epoch had finished, so no checkpoint was written"
            raise SqueezelabError(
                f"loss became {loss.item()} at epoch {epoch + 1} step {loop.epoch_step + 1}: training diverged; "
                f"{kept_note}; lower --lr (was {run.base_lr:g}) or raise --warmup-epochs")
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        if not run.scaler.is_enabled():  # fp16's GradScaler must see overflows itself: it skips those steps
            repaired = zero_nonfinite_gradients(run.model)
            if repaired and not run.nonfinite_gradients_noted:
                run.nonfinite_gradients_noted = True
                _warn(ddp, f"{repaired} non-finite gradient value(s) at epoch {epoch + 1} step "
                           f"{loop.epoch_step + 1} although the loss was finite (a CPU kernel fault, "
                           f"docs/reliability.md); zeroed, here and at any later step")
        if cfg.grad_clip:
            run.scaler.unscale_(run.optimizer)
            nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.scheduler.step()
        if run.masks is not None:
            apply_masks(run.model, run.masks)
        if run.average is not None:
            run.average.update(run.model)
        loop.step += 1
        loop.epoch_step += 1
        seen += len(labels)
        if n_valid:
            with torch.no_grad():
                sums[0] += loss.detach().double() * n_valid
                sums[1] += (logits.argmax(1) == labels).sum()  # skipped samples (label -1) never match
            running["count"] += n_valid
        if cfg.after_step is not None:
            cfg.after_step(run.model)
        if progress.enabled:
            progress.update(loop.epoch_step, sums[0].item() / max(running["count"], 1), seen)
        if stop.stop or bad[1] > 0:
            interrupted = True
            break
    progress.close()
    running["loss"], running["correct"] = sums.tolist()
    running["seconds"] += time.perf_counter() - tic
    if interrupted:
        saver.save_state(_state_dict(run, loop))
    return interrupted


def _evaluates(cfg: TrainConfig, epoch: int) -> bool:
    """Whether the run evaluates after ``epoch`` (1-based): every ``eval_every`` epochs, the last one and the
    ``stop_after`` one."""
    return epoch % cfg.eval_every == 0 or epoch == cfg.epochs or epoch == cfg.stop_after


def _finish_epoch(run: TrainingRun, loop: LoopState, saver: CheckpointSaver) -> dict[str, Any]:
    """Evaluate (when due), append the epoch's metrics row, reset the running sums and write the run directory.

    Before an evaluation the BatchNorm statistics of the evaluated model (the weight average, if any) are
    recomputed with its weights; between evaluations the validation columns of the row are empty.
    """
    cfg, ddp = run.cfg, run.ddp
    running = loop.running
    sums = torch.tensor([running["loss"], running["correct"], running["count"], running["skipped"]],
                        dtype=torch.float64)
    if ddp.enabled:
        dist.all_reduce(sums)
    # No readable image is an error before anything is saved; a large unreadable share is said once, in the
    # run's first epoch and first evaluation (the epoch lines count the skipped images).
    warning = check_readable(int(sums[2].item()), int(sums[3].item()), "training images", run.bundle.source)
    if not loop.history:
        _warn(ddp, warning)
    count = max(sums[2].item(), 1.0)
    row: dict[str, Any] = {
        "epoch": loop.epoch + 1, "train_loss": sums[0].item() / count, "train_top1": 100.0 * sums[1].item() / count,
        "val_loss": None, "val_top1": None, "val_top5": None, "lr": run.optimizer.param_groups[0]["lr"],
        "images_per_s": (sums[2].item() + sums[3].item()) / max(running["seconds"], 1e-9),
        "seconds": running["seconds"], "skipped_images": int(sums[3].item()), "eval_seconds": 0.0,
    }
    improved = False
    if _evaluates(cfg, loop.epoch + 1):
        tic = time.perf_counter()
        evaluated = run.evaluated
        for average, layer in zip(evaluated.modules(), run.model.modules()):
            average.training = layer.training  # recompute the statistics of the same (unfrozen) BN layers
        recompute_bn_statistics(evaluated, run.bundle.train, batch_size=cfg.batch_size,
                                seed=cfg.seed * 1000 + loop.epoch, device=run.device, channels_last=cfg.channels_last)
        val = evaluate_model(evaluated, run.bundle.val, batch_size=max(cfg.batch_size, 256), device=run.device,
                             workers=run.workers, channels_last=cfg.channels_last, rank=ddp.rank,
                             world_size=ddp.world_size)
        warning = check_readable(val.count, val.skipped, "validation images", run.bundle.source)
        if all(row["val_top1"] is None for row in loop.history):
            _warn(ddp, warning)
        row.update(val_loss=val.loss, val_top1=val.top1, val_top5=val.top5,
                   skipped_images=row["skipped_images"] + val.skipped, eval_seconds=time.perf_counter() - tic)
        improved = val.top1 > loop.best_top1
        loop.best_top1 = max(loop.best_top1, val.top1)
    loop.history.append(row)
    loop.epoch += 1
    loop.epoch_step = 0
    loop.running = _zero_running()
    summary = {"model": saver.meta.architecture, "data": run.bundle.source, "best_val_top1": loop.best_top1,
               "epochs": len(loop.history), "world_size": ddp.world_size}
    saver.save_epoch(run.evaluated, improved, _state_dict(run, loop), loop.history, summary,
                     f"{saver.meta.architecture} on {run.bundle.source}")
    return row


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    """The log line of a finished epoch."""
    skipped = f", {row['skipped_images']} unreadable images skipped" if row["skipped_images"] else ""
    val = "(not evaluated)" if row["val_top1"] is None else \
        f"val loss {row['val_loss']:.4f}  top-1 {row['val_top1']:.2f}%  top-5 {row['val_top5']:.2f}%"
    return (f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f}  {val}  lr {row['lr']:.4g}  "
            f"{row['images_per_s']:.0f} img/s  {row['seconds']:.1f}s{skipped}")


def train(config: Optional[TrainConfig] = None, *, explicit: Optional[Collection[str]] = None,
          **kwargs: Any) -> TrainResult:
    """Train (or fine-tune, or resume) a model; ``train(TrainConfig(...))`` or ``train(model=..., data=...)``.

    Returns a :class:`TrainResult`. Raises :class:`SqueezelabError` for bad
    input and when the loss becomes NaN/inf (the last good checkpoint is kept).
    On SIGINT/SIGTERM the state is saved after the current step and the result
    has ``interrupted=True``; ``resume=RUN_DIR`` continues exactly, taking every
    setting from the run. ``explicit`` names the fields the caller set on purpose
    (the CLI's given flags; default: those that differ from TrainConfig's
    defaults): on resume, only those are checked against the saved run.
    """
    if config is None:
        unknown = set(kwargs) - TrainConfig.field_names()
        if unknown:
            raise SqueezelabError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        config = TrainConfig(**kwargs)
    elif kwargs:
        config = replace(config, **kwargs)
    threads = torch.get_num_threads()
    try:
        # a missing, foreign or damaged state is refused before the lock touches the run directory
        resume_state = load_state(config.resume) if config.resume else None
        run_dir = _resolve_run_dir(config)
        with locked_run_dir(run_dir, enabled=int(os.environ.get("RANK", "0")) == 0, create=not config.resume):
            return _drive(config, explicit_fields(config) if explicit is None else set(explicit), run_dir,
                          resume_state)
    finally:
        torch.set_num_threads(threads)


def _drive(cfg: TrainConfig, explicit: set[str], run_dir: Path, resume_state: Optional[dict[str, Any]]
           ) -> TrainResult:
    """The driver: validate, set up (or restore), run the epochs, save; nothing is written before the first save."""
    planned = cfg.epochs
    if resume_state is not None:
        cfg, planned = resume_config(cfg, resume_state["config"], explicit)
    cfg = replace(cfg.with_recipe(), data=parse_data_source(cfg.data).absolute())  # the run records where
    validate_config(cfg)
    check_val_fraction(cfg, explicit)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device_kind = "cuda" if (cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())) \
        else "cpu"
    ddp = _setup_distributed(device_kind)
    device = _device(cfg, ddp)
    if device.type == "cpu":
        keep_freed_memory()  # reuse freed activations instead of fresh zeroed pages every step (cpu.py)
    loop = LoopState.from_state(resume_state) if resume_state is not None else LoopState()
    done = loop.epoch if loop.epoch_step == 0 else -1
    if done >= cfg.epochs or (cfg.stop_after is not None and done >= cfg.stop_after):
        why = f"finished ({done}/{cfg.epochs} epochs)" if done >= cfg.epochs else \
            f"at epoch {done}/{cfg.epochs}, not before --stop-after {cfg.stop_after}"
        extend = "; pass a larger --epochs to extend it" if done >= cfg.epochs else ""
        _log(ddp, f"run {run_dir} is {why}: nothing to do, nothing written{extend}")
        return TrainResult(run_dir, run_dir / "best.safetensors", run_dir / "last.safetensors", loop.best_top1,
                           loop.history, stopped=done < cfg.epochs)
    check_run_dir(cfg, run_dir)

    run = _setup(cfg, ddp, device, resume_state, run_dir)
    meta = CheckpointMeta(
        architecture=get_model_entry(cfg.model).name, num_classes=run.bundle.num_classes,
        in_chans=run.bundle.in_chans, model_kwargs=run.model_kwargs, preprocess=run.bundle.preprocess,
        categories=run.bundle.classes, source=f"squeezelab train --data {cfg.data}",
        extra={"train_seed": str(cfg.seed), "input_size": str(run.bundle.input_size)})
    saver = CheckpointSaver(run_dir, meta, cfg.to_dict(), enabled=ddp.is_main, overwrite=cfg.overwrite,
                            masks=run.masks if resume_state is None else None,
                            has_checkpoint=resume_state is not None and (run_dir / "last.safetensors").is_file())
    bundle = run.bundle
    _log(ddp, f"training {meta.architecture} ({run.init_note}) on {bundle.source}: {len(bundle.train)} train / "
              f"{len(bundle.val)} val images, {bundle.num_classes} classes, {bundle.input_size} px, "
              f"{run.model_kwargs or 'no overrides'}; {cfg.epochs} epochs x {run.steps_per_epoch} steps, batch "
              f"{cfg.batch_size} x {ddp.world_size} process(es), {type(run.optimizer).__name__} lr {run.base_lr:g} "
              f"weight decay {run.optimizer.param_groups[0]['weight_decay']:g} {cfg.schedule}, "
              f"device {device}, precision {run.precision}")
    if resume_state is not None:
        restore_rng(resume_state["rng"])
        if cfg.epochs != planned:
            old, new = _reschedule(run)
            _log(ddp, f"--epochs {cfg.epochs} extends the run planned for {planned} epochs: a new {cfg.schedule} "
                      f"schedule from epoch {loop.epoch + 1} step {loop.epoch_step + 1} (lr {old:.4g} -> {new:.4g}); "
                      f"the result differs from a {planned}-epoch run")

    interrupted = stopped = False
    train_start = time.perf_counter()
    with _StopFlag() as stop:
        while loop.epoch < cfg.epochs:
            if train_one_epoch(run, loop, stop, saver):
                interrupted = True
                _log(ddp, f"interrupted at epoch {loop.epoch + 1} step {loop.epoch_step}; state saved, continue "
                          f"with --resume {run_dir}")
                break
            row = _finish_epoch(run, loop, saver)
            _log(ddp, _epoch_line(row, cfg.epochs))
            if cfg.stop_after is not None and cfg.stop_after <= loop.epoch < cfg.epochs:
                stopped = True
                _log(ddp, f"stopped after epoch {loop.epoch} of {cfg.epochs} (--stop-after {cfg.stop_after}); "
                          f"state saved, continue the same schedule with --resume {run_dir}")
                break
    return TrainResult(run_dir, saver.best, saver.last, loop.best_top1, loop.history, interrupted,
                       time.perf_counter() - train_start, stopped)

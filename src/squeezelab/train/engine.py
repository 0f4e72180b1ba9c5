"""The training loop: single process or DistributedDataParallel under torchrun.

One call, :func:`train`, builds the datasets and the model, trains with the
recipe of :class:`~squeezelab.train.config.TrainConfig`, evaluates after every
epoch and writes the run directory (``docs/training.md``)::

    RUN/config.json          the configuration
    RUN/state.pt             full training state for --resume (weights_only loadable)
    RUN/last.safetensors     model after the last finished epoch (native checkpoint)
    RUN/best.safetensors     model with the best val top-1 so far
    RUN/metrics.json|csv     per-epoch metrics
    RUN/curves.png           loss and accuracy curves

Determinism: the sample order depends on (seed, epoch, rank), each sample's
augmentation is seeded by (seed, epoch, index), and the RNG states are saved
with the model, so an interrupted run resumed with ``--resume`` reproduces the
uninterrupted run bit for bit on CPU.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data.datasets import SKIPPED_LABEL, SMALL_INPUT_MAX, DatasetBundle, EpochSampler, build_datasets
from ..errors import SqueezelabError
from ..io import atomic_write_text
from ..models import create_model, get_model_entry
from ..weights.checkpoint import CheckpointMeta, read_checkpoint, save_checkpoint
from .config import TrainConfig
from .logs import Progress, plot_curves, write_metrics
from .state import STATE_FILE, capture_rng, load_state, restore_rng, save_state

#: (base LR, batch) of the papers' solvers (shared/reference/models.md): SqueezeNet's Caffe solver
#: (no BN) and SqueezeNext's (BN).
SQUEEZENET_SOLVER = (0.04, 512)
SQUEEZENEXT_SOLVER = (0.4, 1024)


def default_lr(batchnorm: bool, batch: int) -> float:
    """The base LR for a total batch of ``batch`` images, scaled from the papers' solvers.

    Without BatchNorm (SqueezeNet) the Caffe solver's rate scales linearly with the
    batch: these networks diverge or stall at higher rates (docs/small-inputs.md).
    With BatchNorm (SqueezeNext and the chapter's networks) the rate scales with the
    square root of the batch (Krizhevsky 2014; Hoffer et al. 2017): linear scaling
    from batch 1024 leaves 0.025 at batch 64, which reached 31% on digits in 6 epochs
    where 0.1 reached 83% (docs/training.md, "Recipe").
    """
    if batchnorm:
        rate, reference = SQUEEZENEXT_SOLVER
        return rate * math.sqrt(batch / reference)
    rate, reference = SQUEEZENET_SOLVER
    return rate * batch / reference


@dataclass
class EvalResult:
    """Loss and accuracy (percent) over a dataset."""

    loss: float
    top1: float
    top5: float
    count: int
    skipped: int = 0


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


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _create(name: str, num_classes: int, in_chans: int, kwargs: dict[str, Any]) -> nn.Module:
    return create_model(name, num_classes=num_classes, in_chans=in_chans, **kwargs)


def _model_kwargs(cfg: TrainConfig, input_size: int, num_classes: int, in_chans: int) -> dict[str, Any]:
    """User overrides, plus ``small_input=True`` for inputs of 64 px or less on models that have the option."""
    kwargs = dict(cfg.model_kwargs)
    if "small_input" not in kwargs and input_size <= SMALL_INPUT_MAX:
        try:
            _create(cfg.model, num_classes, in_chans, {**kwargs, "small_input": True})
            kwargs["small_input"] = True
        except SqueezelabError:
            pass
    return kwargs


def _load_pretrained(cfg: TrainConfig) -> Optional[tuple[dict[str, torch.Tensor], CheckpointMeta]]:
    if not cfg.pretrained:
        return None
    if not Path(cfg.pretrained).is_file():
        raise SqueezelabError(f"--pretrained {cfg.pretrained}: no such file; pass a squeezelab .safetensors checkpoint")
    state, meta = read_checkpoint(cfg.pretrained)
    if get_model_entry(cfg.model).name != meta.architecture:
        raise SqueezelabError(f"--pretrained {cfg.pretrained} holds {meta.architecture} weights, not "
                              f"{get_model_entry(cfg.model).name}; train {meta.architecture} or pick other weights")
    return state, meta


def _build_model(cfg: TrainConfig, bundle: DatasetBundle, pretrained) -> tuple[nn.Module, dict[str, Any], str]:
    """The model, its create_model overrides and a note on how it was initialised."""
    if cfg.num_classes is not None and cfg.num_classes != bundle.num_classes:
        raise SqueezelabError(f"--num-classes {cfg.num_classes} does not match the {bundle.num_classes} classes of "
                              f"{bundle.source}; drop --num-classes or fix the data")
    if pretrained is None:
        kwargs = _model_kwargs(cfg, bundle.input_size, bundle.num_classes, bundle.in_chans)
        return _create(cfg.model, bundle.num_classes, bundle.in_chans, kwargs), kwargs, "random initialisation"
    state, meta = pretrained
    kwargs = {**meta.model_kwargs, **cfg.model_kwargs}
    model = _create(cfg.model, meta.num_classes, meta.in_chans, kwargs)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise SqueezelabError(f"--pretrained {cfg.pretrained} does not fit {cfg.model} with {kwargs}: "
                              f"{str(exc).splitlines()[0]}") from None
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
    """Multiplier of the base LR at ``step``: linear warmup from 1/warmup, then cosine or poly (power 1) to 0.

    Poly is the SqueezeNet Caffe solver's ``lr_policy: "poly"`` with ``power: 1``;
    cosine is SGDR without restarts (Loshchilov & Hutter 2017), as in SqueezeNext's recipe.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "poly":
        return 1.0 - progress
    raise SqueezelabError(f"unknown schedule {schedule!r}; use cosine or poly")


def _loader(dataset: Dataset, batch_size: int, sampler, workers: int, device: torch.device, seed: int) -> DataLoader:
    """A loader with its own generator, so starting an epoch draws nothing from the global RNG (exact resume)."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=device.type == "cuda", drop_last=False, generator=torch.Generator().manual_seed(seed))


def evaluate_model(model: nn.Module, dataset: Dataset, *, batch_size: int = 256, device: str | torch.device = "cpu",
                   workers: int = 0, channels_last: bool = False, rank: int = 0, world_size: int = 1) -> EvalResult:
    """Mean cross-entropy, top-1 and top-5 (percent) of ``model`` on ``dataset``.

    With ``world_size > 1`` each rank evaluates every ``world_size``-th sample
    and the sums are all-reduced, so every rank returns the full-set numbers.
    Samples whose image failed to decode are counted in ``skipped``.
    """
    device = torch.device(device)
    indices = list(range(rank, len(dataset), world_size))
    loader = DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size, num_workers=workers)
    sums = torch.zeros(5, dtype=torch.float64)  # loss, top1, top5, count, skipped
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            keep = labels != SKIPPED_LABEL
            sums[4] += float((~keep).sum())
            if not keep.any():
                continue
            logits = model(images[keep]).float()
            labels = labels[keep]
            k = min(5, logits.shape[1])
            topk = logits.topk(k, dim=1).indices
            sums[0] += float(F.cross_entropy(logits, labels, reduction="sum"))
            sums[1] += float((topk[:, 0] == labels).sum())
            sums[2] += float((topk == labels[:, None]).any(dim=1).sum())
            sums[3] += len(labels)
    model.train(was_training)
    if world_size > 1:
        dist.all_reduce(sums)
    n = max(sums[3].item(), 1.0)
    return EvalResult(sums[0].item() / n, 100.0 * sums[1].item() / n, 100.0 * sums[2].item() / n,
                      int(sums[3].item()), int(sums[4].item()))


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

    def _handle(self, signum, frame) -> None:
        self.stop = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _log(ddp: _Dist, message: str) -> None:
    if ddp.is_main:
        print(message, flush=True)


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
    if cfg.resume:
        resume = Path(cfg.resume)
        return resume.parent if resume.is_file() else resume
    return Path(cfg.output or f"runs/{get_model_entry(cfg.model).name}")


def _restore_config(cfg: TrainConfig, saved: dict[str, Any]) -> TrainConfig:
    """The saved run's configuration, keeping this call's epochs, device, workers, progress and callback."""
    keep = {"epochs", "device", "workers", "threads", "progress", "after_step", "resume", "output"}
    values = {k: v for k, v in saved.items() if k in TrainConfig.field_names() and k not in keep}
    return replace(cfg, **values)


def train(config: Optional[TrainConfig] = None, **kwargs: Any) -> TrainResult:
    """Train (or fine-tune, or resume) a model; ``train(TrainConfig(...))`` or ``train(model=..., data=...)``.

    Returns a :class:`TrainResult`. Raises :class:`SqueezelabError` for bad
    input and when the loss becomes NaN/inf (the last good checkpoint is kept).
    On SIGINT/SIGTERM the state is saved after the current step and the result
    has ``interrupted=True``; ``--resume RUN_DIR`` continues exactly.
    """
    if config is None:
        unknown = set(kwargs) - TrainConfig.field_names()
        if unknown:
            raise SqueezelabError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        config = TrainConfig(**kwargs)
    elif kwargs:
        config = replace(config, **kwargs)
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train(config)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig) -> TrainResult:
    run_dir = _resolve_run_dir(cfg)
    resume_state = None
    if cfg.resume:
        resume_state = load_state(cfg.resume)
        cfg = _restore_config(cfg, resume_state["config"])
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise SqueezelabError(f"--epochs and --batch-size must be >= 1, got {cfg.epochs} and {cfg.batch_size}")
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise SqueezelabError(f"--label-smoothing must be in [0, 1), got {cfg.label_smoothing}")
    if cfg.amp not in ("auto", "on", "off"):
        raise SqueezelabError(f"--amp must be auto, on or off, got {cfg.amp!r}")
    lr_factor(0, 1, 0, cfg.schedule)

    device_kind = "cuda" if (cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())) \
        else "cpu"
    ddp = _setup_distributed(device_kind)
    device = _device(cfg, ddp)
    torch.manual_seed(cfg.seed)
    pretrained = _load_pretrained(cfg)
    in_chans = cfg.in_chans or (pretrained[1].in_chans if pretrained else None)
    bundle = build_datasets(cfg.data, cfg.input_size, in_chans=in_chans, augment=cfg.augment,
                            val_fraction=cfg.val_fraction, train_limit=cfg.train_limit, val_limit=cfg.val_limit,
                            seed=cfg.seed)
    if resume_state is not None:
        if int(resume_state["num_classes"]) != bundle.num_classes:
            raise SqueezelabError(f"cannot resume: the run had {resume_state['num_classes']} classes, "
                                  f"{bundle.source} has {bundle.num_classes}")
        pretrained = None
    model, model_kwargs, init_note = _build_model(cfg, bundle, pretrained)
    if resume_state is not None:
        model_kwargs = dict(resume_state["model_kwargs"])
        model = _create(cfg.model, bundle.num_classes, bundle.in_chans, model_kwargs)
        model.load_state_dict(resume_state["model"])
        init_note = f"resumed from {run_dir / STATE_FILE}"
    if cfg.freeze_features:
        _freeze_features(model)

    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    use_amp = cfg.amp == "on" or (cfg.amp == "auto" and device.type == "cuda")
    amp_dtype = torch.bfloat16 if (device.type != "cuda" or torch.cuda.is_bf16_supported()) else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)

    base_lr = cfg.lr if cfg.lr is not None else default_lr(_has_batchnorm(model), cfg.batch_size * ddp.world_size)
    optimizer = torch.optim.SGD(_param_groups(model, cfg.weight_decay), lr=base_lr, momentum=cfg.momentum)
    steps_per_epoch = math.ceil(math.ceil(len(bundle.train) / ddp.world_size) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    warmup_steps = int(round(cfg.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, warmup_steps, cfg.schedule))
    net: nn.Module = model
    if ddp.enabled:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    meta = CheckpointMeta(
        architecture=get_model_entry(cfg.model).name, num_classes=bundle.num_classes, in_chans=bundle.in_chans,
        model_kwargs=model_kwargs, preprocess=bundle.preprocess, categories=bundle.classes,
        source=f"squeezelab train --data {cfg.data}",
        extra={"train_seed": str(cfg.seed), "input_size": str(bundle.input_size)})
    start_epoch, global_step, epoch_step = 0, 0, 0
    history: list[dict[str, Any]] = []
    best_top1 = -1.0
    running = {"loss": 0.0, "correct": 0.0, "count": 0.0, "skipped": 0.0, "seconds": 0.0}
    if resume_state is not None:
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        scaler.load_state_dict(resume_state["scaler"])
        start_epoch, global_step = int(resume_state["epoch"]), int(resume_state["step"])
        epoch_step = int(resume_state["epoch_step"])
        running = {k: float(v) for k, v in resume_state["running"].items()}
        history = [dict(row) for row in resume_state["history"]]
        best_top1 = float(resume_state["best_top1"])
        restore_rng(resume_state["rng"])
    if ddp.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2))
    workers = cfg.workers if cfg.workers is not None else (min(8, os.cpu_count() or 1) if device.type == "cuda" else 0)
    _log(ddp, f"training {meta.architecture} ({init_note}) on {bundle.source}: {len(bundle.train)} train / "
              f"{len(bundle.val)} val images, {bundle.num_classes} classes, {bundle.input_size} px, "
              f"{model_kwargs or 'no overrides'}; {cfg.epochs} epochs x {steps_per_epoch} steps, batch "
              f"{cfg.batch_size} x {ddp.world_size} process(es), lr {base_lr:g} {cfg.schedule}, "
              f"device {device}{', amp ' + str(amp_dtype).split('.')[-1] if use_amp else ''}")

    def state_dict_now(epoch: int, done_in_epoch: int) -> dict[str, Any]:
        return {
            "format": "squeezelab-train-state/1", "config": cfg.to_dict(), "model_kwargs": model_kwargs,
            "num_classes": bundle.num_classes, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": capture_rng(),
            "epoch": epoch, "step": global_step, "epoch_step": done_in_epoch, "running": dict(running),
            "history": history, "best_top1": best_top1,
        }

    interrupted = False
    train_start = time.perf_counter()
    with _StopFlag() as stop:
        for epoch in range(start_epoch, cfg.epochs):
            sampler = EpochSampler(bundle.train, seed=cfg.seed, epoch=epoch, rank=ddp.rank,
                                   world_size=ddp.world_size, start=epoch_step * cfg.batch_size)
            loader = _loader(bundle.train, cfg.batch_size, sampler, workers, device, cfg.seed * 1000 + epoch)
            _set_train_mode(model, cfg.freeze_features)
            progress = Progress(cfg.progress and ddp.is_main, steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}")
            tic = time.perf_counter()
            seen = 0
            for images, labels in loader:
                images = images.to(device, non_blocking=True)
                labels = labels.to(device, non_blocking=True)
                if cfg.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                keep = labels != SKIPPED_LABEL
                n_valid = int(keep.sum())
                running["skipped"] += len(labels) - n_valid
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    logits = net(images)
                    loss = F.cross_entropy(logits.float(), labels, ignore_index=SKIPPED_LABEL,
                                           label_smoothing=cfg.label_smoothing)
                if n_valid == 0:
                    loss = logits.sum() * 0.0
                bad = torch.tensor([0.0 if torch.isfinite(loss) else 1.0, 1.0 if stop.stop else 0.0])
                if ddp.enabled:
                    dist.all_reduce(bad)
                if bad[0] > 0:
                    progress.close()
                    kept = run_dir / "last.safetensors"
                    kept_note = f"the last good checkpoint {kept} was kept" if kept.exists() else \
                        "no epoch had finished, so no checkpoint was written"
                    raise SqueezelabError(
                        f"loss became {loss.item()} at epoch {epoch + 1} step {epoch_step + 1}: training diverged; "
                        f"{kept_note}; lower --lr (was {base_lr:g}) or raise --warmup-epochs")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.grad_clip:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                global_step += 1
                epoch_step += 1
                seen += len(labels)
                if n_valid:
                    running["loss"] += loss.item() * n_valid
                    running["correct"] += float((logits.argmax(1) == labels)[keep].sum())
                    running["count"] += n_valid
                if cfg.after_step is not None:
                    cfg.after_step(model)
                progress.update(epoch_step, running["loss"] / max(running["count"], 1), seen)
                if stop.stop or bad[1] > 0:
                    interrupted = True
                    break
            progress.close()
            running["seconds"] += time.perf_counter() - tic
            if interrupted:
                if ddp.is_main:
                    save_state(run_dir / STATE_FILE, state_dict_now(epoch, epoch_step))
                _log(ddp, f"interrupted at epoch {epoch + 1} step {epoch_step}; state saved, continue with "
                          f"--resume {run_dir}")
                break
            sums = torch.tensor([running["loss"], running["correct"], running["count"], running["skipped"]],
                                dtype=torch.float64)
            if ddp.enabled:
                dist.all_reduce(sums)
            val = evaluate_model(model, bundle.val, batch_size=max(cfg.batch_size, 256), device=device,
                                 workers=workers, channels_last=cfg.channels_last, rank=ddp.rank,
                                 world_size=ddp.world_size)
            count = max(sums[2].item(), 1.0)
            row = {
                "epoch": epoch + 1, "train_loss": sums[0].item() / count, "train_top1": 100.0 * sums[1].item() / count,
                "val_loss": val.loss, "val_top1": val.top1, "val_top5": val.top5,
                "lr": optimizer.param_groups[0]["lr"],
                "images_per_s": (sums[2].item() + sums[3].item()) / max(running["seconds"], 1e-9),
                "seconds": running["seconds"], "skipped_images": int(sums[3].item()) + val.skipped,
            }
            history.append(row)
            improved = val.top1 > best_top1
            best_top1 = max(best_top1, val.top1)
            epoch_step = 0
            running = {"loss": 0.0, "correct": 0.0, "count": 0.0, "skipped": 0.0, "seconds": 0.0}
            if ddp.is_main:
                save_checkpoint(run_dir / "last.safetensors", model.state_dict(), meta)
                if improved:
                    save_checkpoint(run_dir / "best.safetensors", model.state_dict(), meta)
                save_state(run_dir / STATE_FILE, state_dict_now(epoch + 1, 0))
                summary = {"model": meta.architecture, "data": bundle.source, "best_val_top1": best_top1,
                           "epochs": len(history), "world_size": ddp.world_size}
                write_metrics(run_dir, history, summary)
                plot_curves(run_dir, history, f"{meta.architecture} on {bundle.source}")
            skipped = f", {row['skipped_images']} unreadable images skipped" if row["skipped_images"] else ""
            _log(ddp, f"epoch {epoch + 1}/{cfg.epochs}  train loss {row['train_loss']:.4f}  val loss "
                      f"{row['val_loss']:.4f}  top-1 {row['val_top1']:.2f}%  top-5 {row['val_top5']:.2f}%  "
                      f"lr {row['lr']:.4g}  {row['images_per_s']:.0f} img/s  {row['seconds']:.1f}s{skipped}")
    return TrainResult(run_dir, run_dir / "best.safetensors", run_dir / "last.safetensors", best_top1, history,
                       interrupted, time.perf_counter() - train_start)

"""Training configuration: one dataclass, shared by the CLI and the Python API."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:  # this module stays torch-free, so the CLI can show its defaults without loading torch
    from torch import nn

#: ``TrainConfig.optimizer`` values: ``auto`` picks SGD with BatchNorm, AdamW without (``engine.resolve_optimizer``).
OPTIMIZERS = ("auto", "sgd", "adamw")
#: ``TrainConfig.schedule`` values (``engine.lr_factor``).
SCHEDULES = ("cosine", "poly", "constant")
#: ``TrainConfig.amp`` values (``engine.choose_amp``).
AMP_MODES = ("auto", "on", "off")
#: ``TrainConfig.data_loader`` values: per-sample transforms, or small images kept decoded and augmented a batch
#: at a time (``squeezelab.data.batched``; inputs of at most 64 px only), or ``auto``: batched where it can.
DATA_LOADERS = ("auto", "samples", "batched")
#: What each ``TrainConfig.recipe`` sets for the fields left at None (docs/training.md, "The fast recipe",
#: measures each lever of ``fast``).
RECIPES: dict[str, dict[str, Any]] = {
    "default": {"batch_size": 64, "label_smoothing": 0.0, "nesterov": False, "data_loader": "samples",
                "derandomized_flips": False},
    "fast": {"batch_size": 256, "label_smoothing": 0.1, "nesterov": True, "data_loader": "auto",
             "derandomized_flips": True},
}
#: (base LR, batch) of the papers' solvers (shared/reference/models.md): SqueezeNet's Caffe solver
#: (no BN) and SqueezeNext's (BN).
SQUEEZENET_SOLVER = (0.04, 512)
SQUEEZENEXT_SOLVER = (0.4, 1024)
#: (base LR, batch) of AdamW, the default for networks without BatchNorm (docs/training.md, "Short schedules":
#: 0.002 left three of five digits seeds at chance at 16 px; 0.001 trains all of them).
ADAMW_SOLVER = (0.001, 64)
#: Weight decay of each optimizer: the papers' 5e-4 for SGD; AdamW's decoupled decay (Loshchilov & Hutter
#: 2019) at timm's default 0.05.
DEFAULT_WEIGHT_DECAY = {"sgd": 5e-4, "adamw": 0.05}


@dataclass
class TrainConfig:
    """Everything :func:`squeezelab.train.train` needs; defaults are the recipe of ``docs/training.md``.

    The recipe: ``optimizer="auto"`` is the papers' SGD with momentum 0.9 and weight decay
    5e-4 (SqueezeNext section 5) for models with BatchNorm, and AdamW (weight decay 0.05)
    for SqueezeNet, which has none (docs/training.md, "Short schedules"); a linear warmup
    then cosine or poly decay to zero, or a constant rate (for averaging the weights of a
    last phase with ``swa``, stochastic weight averaging). ``lr=None`` picks 0.4 x sqrt(batch/1024) for SGD with
    BatchNorm, 0.04 x batch/512 for SGD without (the Caffe solver; see ``docs/small-inputs.md``)
    and 0.001 x sqrt(batch/64) for AdamW; ``weight_decay=None`` the optimizer's default.
    ``data_seed`` fixes the train/val split and the ``train_limit``/``val_limit`` subsets
    independently of ``seed`` (default: ``seed``), so several seeds can train on one fixed
    subset (``squeezelab sweep``).
    """

    model: str
    data: str = "digits"
    output: Optional[str] = None
    seed: int = 0
    data_seed: Optional[int] = None
    input_size: Optional[int] = None
    epochs: int = 10
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    optimizer: str = "auto"
    momentum: float = 0.9
    weight_decay: Optional[float] = None
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    label_smoothing: Optional[float] = None
    recipe: str = "default"
    nesterov: Optional[bool] = None
    ema_decay: float = 0.0
    swa: bool = False
    whiten_stem: bool = False
    data_loader: Optional[str] = None
    derandomized_flips: Optional[bool] = None
    cutout: int = 0
    eval_every: int = 1
    amp: str = "auto"
    channels_last: bool = True
    device: str = "auto"
    workers: Optional[int] = None
    threads: Optional[int] = None
    pretrained: Optional[str] = None
    freeze_features: bool = False
    num_classes: Optional[int] = None
    in_chans: Optional[int] = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    augment: bool = True
    val_fraction: float = 0.2
    train_limit: Optional[int] = None
    val_limit: Optional[int] = None
    grad_clip: Optional[float] = None
    resume: Optional[str] = None
    overwrite: bool = False
    stop_after: Optional[int] = None
    prune_masks: Optional[str] = None
    progress: bool = True
    after_step: Optional[Callable[[nn.Module], None]] = None

    def with_recipe(self) -> "TrainConfig":
        """This configuration with its recipe's setting (:data:`RECIPES`) in every field left at None."""
        settings = RECIPES.get(self.recipe, {})  # an unknown recipe is left for the config checks to report
        return replace(self, **{k: v for k, v in settings.items() if getattr(self, k) is None})

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able fields (callbacks left out)."""
        return {k: v for k, v in asdict(self).items() if k != "after_step"}

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}

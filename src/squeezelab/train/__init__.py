"""Training, fine-tuning and evaluation on real datasets, single process or DDP (``docs/training.md``)."""

from .config import TrainConfig
from .engine import EvalResult, TrainResult, evaluate_model, lr_factor, train, train_one_epoch

__all__ = ["EvalResult", "TrainConfig", "TrainResult", "evaluate_model", "lr_factor", "train", "train_one_epoch"]

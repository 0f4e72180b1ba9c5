"""Weights: the native checkpoint format (and, with the weights issue, converters and a registry)."""

from .checkpoint import CheckpointMeta, load_checkpoint_model, read_checkpoint, save_checkpoint

__all__ = ["CheckpointMeta", "load_checkpoint_model", "read_checkpoint", "save_checkpoint"]

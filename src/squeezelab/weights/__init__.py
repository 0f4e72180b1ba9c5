"""Weights: the native checkpoint, readers for the real SqueezeNet weight files, and a pretrained registry.

``load_weights(spec)`` / ``load_model(spec)`` accept a registered name (see
:func:`list_weights`) or a path to any supported file; ``docs/weights.md``
lists the formats and the cache.
"""

from .checkpoint import CheckpointMeta, load_checkpoint_model, read_checkpoint, save_checkpoint
from .formats import DecodeStats, read_deep_compression, read_ncnn, read_openvino
from .imagenet import imagenet_categories, imagenet_wnids
from .loader import WEIGHTS_LOADERS, convert_weights, create_model, detect_format, load_model, load_weights, \
    register_weights_loader
from .registry import WEIGHTS, WeightsEntry, fetch_weights, get_weights_entry, list_weights

__all__ = [
    "WEIGHTS",
    "WEIGHTS_LOADERS",
    "CheckpointMeta",
    "DecodeStats",
    "WeightsEntry",
    "convert_weights",
    "create_model",
    "detect_format",
    "fetch_weights",
    "get_weights_entry",
    "imagenet_categories",
    "imagenet_wnids",
    "list_weights",
    "load_checkpoint_model",
    "load_model",
    "load_weights",
    "read_checkpoint",
    "read_deep_compression",
    "read_ncnn",
    "read_openvino",
    "register_weights_loader",
    "save_checkpoint",
]

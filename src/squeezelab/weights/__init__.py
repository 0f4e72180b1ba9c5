"""Weights: the native checkpoint, readers for the real SqueezeNet weight files, and a pretrained registry.

``build_model(spec)`` (the one builder: every model it returns carries ``model.pretrained_cfg``)
and ``load_weights(spec)`` accept a registered name (see :func:`list_weights`) or a path to any
supported file, ``build_model`` also an architecture name; ``docs/weights.md`` lists the formats
and the cache.
"""

from .checkpoint import CheckpointMeta, pretrained_cfg_of, read_checkpoint, save_checkpoint
from .formats import DecodeStats, read_deep_compression, read_ncnn, read_openvino
from ..data.imagenet import imagenet_categories, imagenet_wnids
from .loader import WEIGHTS_LOADERS, build_model, convert_weights, create_model, detect_format, load_weights, \
    model_from_state, register_weights_loader
from .registry import WEIGHTS, WeightsEntry, fetch_weights, get_weights_entry, list_weights

__all__ = [
    "WEIGHTS",
    "WEIGHTS_LOADERS",
    "CheckpointMeta",
    "DecodeStats",
    "WeightsEntry",
    "build_model",
    "convert_weights",
    "create_model",
    "detect_format",
    "fetch_weights",
    "get_weights_entry",
    "imagenet_categories",
    "imagenet_wnids",
    "list_weights",
    "load_weights",
    "model_from_state",
    "pretrained_cfg_of",
    "read_checkpoint",
    "read_deep_compression",
    "read_ncnn",
    "read_openvino",
    "register_weights_loader",
    "save_checkpoint",
]

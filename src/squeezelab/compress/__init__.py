"""Compression: Deep Compression (prune, share, Huffman) to ``.sqz``, INT8 post-training quantization, low-rank."""

from .deep import CompressedModel, SharedTensor, compress_state_dict
from .pipeline import CompressionReport, compress_model
from .prune import ApplyMasks, MaskKeeper, apply_masks, load_masks, magnitude_masks, save_masks
from .sharing import kmeans_1d, share_weights
from .sqz import read_sqz, write_sqz

__all__ = [
    "ApplyMasks",
    "CompressedModel",
    "CompressionReport",
    "MaskKeeper",
    "SharedTensor",
    "apply_masks",
    "compress_model",
    "compress_state_dict",
    "kmeans_1d",
    "load_masks",
    "magnitude_masks",
    "read_sqz",
    "save_masks",
    "share_weights",
    "write_sqz",
]

"""One call from weights to a ``.sqz`` file, with the per-stage size table (SqueezeNet paper Table 2)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Optional, Sequence

import torch
from PIL import Image

from ..errors import SqueezelabError
from ..io import PathLike
from ..weights.checkpoint import CheckpointMeta
from .biascorr import correct_biases, distil_codebooks, refine_codebooks
from .deep import CompressedModel, compress_state_dict
from .prune import Masks, check_masks
from .sqz import encode_sqz, write_sqz

MIB = 1 << 20


@dataclass
class CompressionReport:
    """What :func:`compress_model` did: stage sizes in bytes, density and the written file."""

    compressed: CompressedModel
    meta: CheckpointMeta
    sizes: list[tuple[str, int]]
    path: Optional[Path] = None

    @property
    def file_bytes(self) -> int:
        return self.sizes[-1][1]

    def rows(self) -> list[list[object]]:
        """Table rows: stage, bytes, MiB, MB, reduction vs dense fp32."""
        dense = self.sizes[0][1]
        return [[stage, size, f"{size / MIB:.3f}", f"{size / 1e6:.3f}", f"{dense / size:.1f}x"]
                for stage, size in self.sizes]

    HEADERS = ("stage", "bytes", "MiB", "MB", "vs dense")


def compress_model(
    state: dict[str, torch.Tensor],
    meta: CheckpointMeta,
    bits: int = 8,
    density: Optional[float] = None,
    index_bits: int = 4,
    scope: Literal["layer", "global"] = "layer",
    masks: Optional[Masks] = None,
    output: Optional[PathLike] = None,
    method: str = "optimal",
    calibration: Optional[Sequence[Image.Image]] = None,
    refine: Literal["least-squares", "bias"] = "least-squares",
    finetune: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
    finetune_epochs: int = 2,
    finetune_lr: float = 1e-3,
    on_stage: Optional[Callable[[str, CompressedModel], None]] = None,
) -> CompressionReport:
    """Prune, share and Huffman-code ``state``; write ``output`` if given.

    The last stage's size is the exact size of the ``.sqz`` file (header,
    metadata with class names, codebooks, biases, Huffman tables and checksum included).
    With ``calibration`` images (no labels; not the evaluation set) the codebooks and biases are
    fitted to the layer outputs (``refine="least-squares"``) or only the biases corrected
    (``"bias"``), see :mod:`.biascorr`. ``finetune`` = (images, labels, -1 = unlabeled) retrains
    the centroids with the masks held (Sec. 3.3), by distillation from ``state`` where unlabeled.
    ``on_stage(name, compressed)`` is called after each stage ("k-means", ``refine``, "fine-tuned").
    """
    if masks is not None:
        check_masks(masks, state)
    compressed = compress_state_dict(state, bits=bits, density=density, index_bits=index_bits, scope=scope,
                                     masks=masks, method=method)
    if refine not in ("least-squares", "bias"):
        raise SqueezelabError(f"unknown refinement {refine!r}; use 'least-squares' or 'bias'")
    if on_stage:
        on_stage("k-means", compressed)
    if calibration:
        if refine == "bias":
            correct_biases(compressed, state, meta, calibration)
        else:
            preprocess = meta.require_preprocess("calibration")
            refine_codebooks(compressed, state, meta, torch.stack([preprocess(im) for im in calibration]))
        if on_stage:
            on_stage(refine, compressed)
    if finetune is not None:
        distil_codebooks(compressed, state, meta, *finetune, epochs=finetune_epochs, lr=finetune_lr)
        if on_stage:
            on_stage("fine-tuned", compressed)
    meta = CheckpointMeta(**{**meta.__dict__, "extra": {**meta.extra, "compression": (
        f"deep-compression bits={bits} density={compressed.density:.4f} index_bits={index_bits} "
        f"codebook={method} calibration={refine if calibration else 'none'}:{len(calibration or ())}_images "
        f"finetune={len(finetune[0]) if finetune is not None else 0}_images")}})
    if output is not None:
        size = write_sqz(output, compressed, meta)
    else:
        size = len(encode_sqz(compressed, meta))
    sizes = compressed.stage_sizes() + [("Huffman (.sqz file)", size)]
    return CompressionReport(compressed, meta, sizes, Path(output) if output is not None else None)

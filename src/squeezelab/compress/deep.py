"""Deep Compression of a state dict: prune -> share weights -> (Huffman, in :mod:`.sqz`).

Han, Mao & Dally, "Deep Compression", ICLR 2016. Every conv/linear weight is
pruned to a mask (Sec. 2), its kept weights clustered into a ``2**bits``
codebook (Sec. 3) and stored as codes; a layer with pruned weights is stored
sparse with *relative* indices of ``index_bits`` bits (Sec. 2, Fig. 2): each
entry records how many zeros precede it, and a gap longer than
``2**index_bits - 1`` is bridged by filler entries whose code is entry 0 of the
codebook, fixed at 0.0. That is exactly the layout of the original
``compressed_SqueezeNet.net``. A layer with no pruned weight is stored dense
(codes only) and uses all ``2**bits`` entries. Biases and every other tensor are
kept as they are (the paper compresses weights only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping, Optional

import numpy as np
import torch

from ..errors import SqueezelabError
from .prune import Masks, magnitude_masks, prunable_names
from .sharing import share_weights

Layout = Literal["sparse", "dense"]


@dataclass
class SharedTensor:
    """One weight tensor as codebook + codes (+ relative indices when sparse)."""

    shape: tuple[int, ...]
    bits: int
    codebook: torch.Tensor  # float32, 2**bits entries
    codes: np.ndarray  # one per stored entry (fillers included)
    gaps: Optional[np.ndarray] = None  # zeros skipped before each entry; None when dense

    @property
    def layout(self) -> Layout:
        return "dense" if self.gaps is None else "sparse"

    @property
    def entries(self) -> int:
        return int(self.codes.size)

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape))

    def code_map(self) -> torch.Tensor:
        """Codebook index of every weight (int64, ``shape``); pruned weights point at entry 0 (0.0 when sparse)."""
        codes = torch.from_numpy(self.codes.astype(np.int64))
        if self.gaps is None:
            return codes.reshape(self.shape)
        flat = torch.zeros(self.numel, dtype=torch.int64)
        flat[torch.from_numpy(np.cumsum(self.gaps.astype(np.int64) + 1) - 1)] = codes
        return flat.reshape(self.shape)

    @property
    def frozen(self) -> tuple[int, ...]:
        """Codebook entries that must keep their value: the 0.0 of a sparse layer (Sec. 2, fillers and pruned)."""
        return () if self.gaps is None else (0,)

    def decode(self) -> torch.Tensor:
        """The quantized weight tensor (float32), bit-exact to what the file stores."""
        codes = torch.from_numpy(self.codes.astype(np.int64))
        if codes.numel() and int(codes.max()) >= self.codebook.numel():
            raise SqueezelabError("a weight code points past its codebook (file corrupted?)")
        if self.gaps is None:
            if codes.numel() != self.numel:
                raise SqueezelabError("a dense layer has the wrong number of codes (file corrupted?)")
            return self.codebook[codes].reshape(self.shape)
        positions = np.cumsum(self.gaps.astype(np.int64) + 1) - 1
        if positions.size and positions[-1] >= self.numel:
            raise SqueezelabError("a sparse layer's relative indices run past the layer (file corrupted?)")
        flat = torch.zeros(self.numel, dtype=torch.float32)
        flat[torch.from_numpy(positions)] = self.codebook[codes]
        return flat.reshape(self.shape)


def relative_index(positions: np.ndarray, codes: np.ndarray, index_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Relative (gap) encoding of sorted flat ``positions`` with filler entries (code 0) for long gaps."""
    top = (1 << index_bits) - 1
    gaps = np.diff(positions, prepend=-1) - 1
    fillers = gaps // (top + 1)
    rest = gaps - fillers * (top + 1)
    counts = fillers + 1
    owner = np.repeat(np.arange(positions.size), counts)
    within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    last = within == fillers[owner]
    return np.where(last, codes[owner], 0), np.where(last, rest[owner], top)


@dataclass
class CompressedModel:
    """A state dict after pruning and weight sharing; :mod:`.sqz` writes it with Huffman coding."""

    shared: dict[str, SharedTensor]
    raw: dict[str, torch.Tensor]
    order: list[str]
    bits: int
    index_bits: int
    density: float = 1.0
    info: dict[str, str] = field(default_factory=dict)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Decoded weights: the quantized weights, exactly as a reader of the file gets them."""
        return {k: self.shared[k].decode() if k in self.shared else self.raw[k] for k in self.order}

    def stage_sizes(self) -> list[tuple[str, int]]:
        """Bytes after each stage, Deep Compression's accounting (Table 1 / Fig. 1 of the paper).

        dense fp32: every tensor at 32 bits. pruned: kept weights at 32 bits plus
        ``index_bits`` per stored entry (fillers included). quantized: ``bits`` per
        entry instead of 32, plus the float32 codebooks. Other tensors stay fp32 in every stage.
        """
        raw_bytes = sum(v.numel() * v.element_size() for v in self.raw.values())
        dense = raw_bytes + 4 * sum(t.numel for t in self.shared.values())
        pruned_bits = quant_bits = 0
        for t in self.shared.values():
            index = 0 if t.gaps is None else self.index_bits * t.entries
            pruned_bits += 32 * t.entries + index
            quant_bits += t.bits * t.entries + index + 32 * t.codebook.numel()
        return [("dense fp32", dense), ("pruned", raw_bytes + (pruned_bits + 7) // 8),
                ("quantized", raw_bytes + (quant_bits + 7) // 8)]

    @property
    def kept(self) -> int:
        """Nonzero shared weights."""
        return sum(int(np.count_nonzero(t.codes)) if t.gaps is not None else t.numel for t in self.shared.values())


def compress_state_dict(
    state: Mapping[str, torch.Tensor],
    bits: int = 8,
    density: Optional[float] = None,
    index_bits: int = 4,
    scope: Literal["layer", "global"] = "layer",
    masks: Optional[Masks] = None,
    method: str = "optimal",
) -> CompressedModel:
    """Prune (unless ``masks`` are given) and weight-share every conv/linear weight of ``state``.

    Args:
        bits: codebook width per layer, 1..8 (the paper: 8 for conv, 5 for FC; SqueezeNet 6 or 8).
        density: fraction of weights kept per layer (or globally); ``None`` keeps the current
            nonzeros, which re-encodes an already pruned model such as the Deep Compression file.
        index_bits: width of the relative sparse index (the paper: 8 for conv, 5 for FC; the
            SqueezeNet file and the default here: 4).
        scope: "layer" or "global" magnitude threshold.
        masks: precomputed masks (e.g. after fine-tuning with :class:`~.prune.MaskKeeper`).
        method: codebook clustering, "optimal" (exact 1-D k-means) or "linear" (the paper's
            linear-init Lloyd); see :func:`~.sharing.share_weights` and docs/compression.md.
    """
    if not 1 <= bits <= 8:
        raise SqueezelabError(f"--bits must be between 1 and 8, got {bits}")
    if not 1 <= index_bits <= 8:
        raise SqueezelabError(f"--index-bits must be between 1 and 8, got {index_bits}")
    state = {k: v.detach().cpu() for k, v in state.items()}
    names = prunable_names(state)
    if not names:
        raise SqueezelabError("the state dict has no conv or linear weights to compress")
    if masks is None:
        masks = magnitude_masks(state, density, scope=scope, names=names)
    shared: dict[str, SharedTensor] = {}
    for name in names:
        weight = state[name].float()
        mask = masks[name].bool() & (weight != 0) if name in masks else weight != 0
        if bool(mask.all()):
            codebook, codes = share_weights(weight, mask, bits, reserve_zero=False, method=method)
            shared[name] = SharedTensor(tuple(weight.shape), bits, codebook, codes.numpy().astype(np.int64))
            continue
        codebook, codes = share_weights(weight, mask, bits, reserve_zero=True, method=method)
        positions = np.flatnonzero(mask.flatten().numpy())
        entry_codes, gaps = relative_index(positions, codes.numpy().astype(np.int64), index_bits)
        shared[name] = SharedTensor(tuple(weight.shape), bits, codebook, entry_codes, gaps)
    raw = {k: v for k, v in state.items() if k not in shared}
    total = sum(t.numel for t in shared.values())
    kept = sum(int(masks[n].bool().sum()) if n in masks else shared[n].numel for n in names)
    return CompressedModel(shared, raw, list(state), bits, index_bits, density=kept / total)

"""Canonical Huffman coding of small-alphabet symbol streams (Deep Compression, Han et al. 2016, Sec. 4).

Codes are canonical (assigned in order of (length, symbol)), so a stream is
described by its code lengths alone. Lengths are capped at :data:`MAX_CODE_LEN`
bits so the decoder can use one lookup table; both the encoder and the decoder
are vectorised with numpy (the decoder follows the bit chain by pointer doubling),
so a million symbols take well under a second.
"""

from __future__ import annotations

import heapq

import numpy as np

from ..errors import SqueezelabError

#: Longest code allowed; the decoder's lookup table has 2**MAX_CODE_LEN entries.
MAX_CODE_LEN = 16


def _unlimited_lengths(freqs: np.ndarray) -> np.ndarray:
    lengths = np.zeros(len(freqs), dtype=np.int64)
    used = [int(s) for s in np.flatnonzero(freqs)]
    if len(used) == 1:
        lengths[used[0]] = 1
        return lengths
    heap = [(int(freqs[s]), s, [s]) for s in used]
    heapq.heapify(heap)
    while len(heap) > 1:
        f1, t1, s1 = heapq.heappop(heap)
        f2, t2, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            lengths[s] += 1
        heapq.heappush(heap, (f1 + f2, min(t1, t2), s1 + s2))
    return lengths


def code_lengths(freqs: np.ndarray, max_len: int = MAX_CODE_LEN) -> np.ndarray:
    """Huffman code length of each symbol (0 for unused symbols), at most ``max_len`` bits.

    If the optimal code is longer than ``max_len``, the frequencies are flattened
    (halved, keeping every used symbol at least 1) until it fits; this costs a
    fraction of a bit per rare symbol and nothing when no cap is hit.
    """
    freqs = np.asarray(freqs, dtype=np.int64)
    if len(freqs) > (1 << max_len):
        raise ValueError(f"alphabet of {len(freqs)} symbols does not fit {max_len}-bit codes")
    work = freqs.copy()
    while True:
        lengths = _unlimited_lengths(work)
        if lengths.max(initial=0) <= max_len:
            return lengths
        work = np.where(work > 0, np.maximum(work >> 1, 1), 0)


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical code values for ``lengths`` (DEFLATE's construction, RFC 1951 Sec. 3.2.2)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = np.zeros(len(lengths), dtype=np.int64)
    code, prev_len = 0, 0
    for sym in sorted(np.flatnonzero(lengths), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[sym]) - prev_len
        codes[sym] = code
        code += 1
        prev_len = int(lengths[sym])
    return codes


def encode(symbols: np.ndarray, lengths: np.ndarray) -> tuple[bytes, int]:
    """Encode ``symbols`` with the canonical code of ``lengths``; returns (bytes, number of bits)."""
    symbols = np.asarray(symbols, dtype=np.int64)
    if len(symbols) == 0:
        return b"", 0
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = canonical_codes(lengths)
    sym_len, sym_code = lengths[symbols], codes[symbols]
    if (sym_len == 0).any():
        raise ValueError("a symbol in the stream has no code (zero frequency)")
    ends = np.cumsum(sym_len)
    starts = ends - sym_len
    total = int(ends[-1])
    bits = np.zeros(total, dtype=np.uint8)
    for j in range(int(sym_len.max())):
        sel = sym_len > j
        bits[starts[sel] + j] = (sym_code[sel] >> (sym_len[sel] - 1 - j)) & 1
    return np.packbits(bits).tobytes(), total


def decode(data: bytes, nbits: int, count: int, lengths: np.ndarray) -> np.ndarray:
    """Decode ``count`` symbols from the first ``nbits`` bits of ``data``.

    Raises SqueezelabError if the bits do not decode to exactly ``count`` symbols.
    """
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    max_len = int(lengths.max(initial=0))
    if max_len == 0 or max_len > MAX_CODE_LEN or nbits > 8 * len(data):
        raise SqueezelabError("Huffman stream is inconsistent with its code table (file corrupted?)")
    codes = canonical_codes(lengths)
    table_sym = np.zeros(1 << max_len, dtype=np.int32)
    table_len = np.zeros(1 << max_len, dtype=np.int32)
    for sym in np.flatnonzero(lengths):
        shift = max_len - int(lengths[sym])
        lo = int(codes[sym]) << shift
        table_sym[lo:lo + (1 << shift)] = sym
        table_len[lo:lo + (1 << shift)] = lengths[sym]
    raw = np.frombuffer(data, dtype=np.uint8).astype(np.int32)
    raw = np.concatenate([raw, np.zeros(3, dtype=np.int32)])
    pos = np.arange(nbits, dtype=np.int32)
    byte = pos >> 3
    word = (raw[byte] << 16) | (raw[byte + 1] << 8) | raw[byte + 2]
    window = (word >> (24 - max_len - (pos & 7))) & ((1 << max_len) - 1)
    step = table_len[window]
    jump = np.minimum(pos + np.where(step == 0, nbits, step), nbits)
    jump = np.append(jump, np.int32(nbits))  # position nbits is the absorbing end
    positions = np.zeros(1, dtype=np.int32)
    while len(positions) < count:
        positions = np.concatenate([positions, jump[positions]])
        jump = jump[jump]
    positions = positions[:count]
    last = int(positions[-1])
    if last >= nbits or last + int(table_len[window[last]]) != nbits:
        raise SqueezelabError("Huffman stream does not decode to the recorded symbol count (file corrupted?)")
    return table_sym[window[positions]]

"""The ``.sqz`` file: a Deep-Compressed model with Huffman-coded streams, a header and a checksum.

Layout (all integers little-endian; full description in docs/sqz-format.md)::

    0   7 bytes  magic b"SQZLAB\\x00"
    7   1 byte   format version (1)
    8   uint32   H, length of the compressed header
    12  H bytes  zlib-compressed UTF-8 JSON header (metadata, tensor table, stream table)
    12+H ...     payload: codebooks, raw tensors, Huffman code-length tables, Huffman streams
    end uint32   CRC-32 of every byte before it

The header's offsets are relative to the payload start. Decoding gives the
quantized weights bit-exactly and a :class:`~squeezelab.weights.checkpoint.CheckpointMeta`,
so the file is self-describing: ``--weights model.sqz`` works wherever a checkpoint does.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import SqueezelabError
from ..io import PathLike, atomic_write_bytes
from ..weights.checkpoint import CheckpointMeta
from . import huffman
from .deep import CompressedModel, SharedTensor

MAGIC = b"SQZLAB\x00"
VERSION = 1
FORMAT = "squeezelab-sqz"
_PREFIX = struct.Struct("<7sBI")
#: Largest decompressed header accepted (a real one is a few KiB), so a crafted zlib bomb cannot exhaust memory.
_MAX_HEADER = 16 << 20
#: Largest tensor (elements) a header may declare.
_MAX_NUMEL = 1 << 31
#: What a structurally wrong header (valid CRC, crafted or buggy writer) makes the decoder raise.
_HEADER_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError, OverflowError)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "float64": torch.float64,
           "int64": torch.int64, "int32": torch.int32, "uint8": torch.uint8, "bool": torch.bool}


class _Payload:
    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> int:
        offset = self.size
        self.parts.append(data)
        self.size += len(data)
        return offset


def _raw_bytes(tensor: torch.Tensor) -> tuple[str, bytes]:
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    names = {v: k for k, v in _DTYPES.items()}
    if tensor.dtype not in names:
        raise SqueezelabError(f"cannot store a tensor of dtype {tensor.dtype} in a .sqz file")
    array = tensor.contiguous().numpy()
    return names[tensor.dtype], array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def _stream(payload: _Payload, symbols: np.ndarray, alphabet: int) -> dict[str, int]:
    freqs = np.bincount(symbols, minlength=alphabet) if symbols.size else np.zeros(alphabet, dtype=np.int64)
    lengths = huffman.code_lengths(freqs)
    data, nbits = huffman.encode(symbols, lengths)
    return {"alphabet": alphabet, "count": int(symbols.size), "nbits": nbits,
            "lengths_offset": payload.add(lengths.astype(np.uint8).tobytes()),
            "offset": payload.add(data), "nbytes": len(data)}


def encode_sqz(compressed: CompressedModel, meta: CheckpointMeta) -> bytes:
    """The bytes of a ``.sqz`` file for ``compressed`` and ``meta``."""
    payload = _Payload()
    tensors: list[dict[str, Any]] = []
    codes, gaps = [], []
    for name in compressed.order:
        if name in compressed.shared:
            t = compressed.shared[name]
            tensors.append({"name": name, "kind": "shared", "shape": list(t.shape), "bits": t.bits,
                            "layout": t.layout, "entries": t.entries,
                            "codebook_offset": payload.add(t.codebook.numpy().astype("<f4").tobytes())})
            codes.append(t.codes)
            if t.gaps is not None:
                gaps.append(t.gaps)
        else:
            dtype, data = _raw_bytes(compressed.raw[name])
            tensors.append({"name": name, "kind": "raw", "shape": list(compressed.raw[name].shape),
                            "dtype": dtype, "offset": payload.add(data), "nbytes": len(data)})
    as_array = lambda parts: np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)  # noqa: E731
    streams = {
        "codes": _stream(payload, as_array(codes), 1 << max(t.bits for t in compressed.shared.values())),
        "gaps": _stream(payload, as_array(gaps), 1 << compressed.index_bits),
    }
    header = {"format": FORMAT, "version": VERSION, "meta": meta.to_strings(), "bits": compressed.bits,
              "index_bits": compressed.index_bits, "density": compressed.density, "tensors": tensors,
              "streams": streams}
    head = zlib.compress(json.dumps(header, separators=(",", ":")).encode("utf-8"), 9)
    body = _PREFIX.pack(MAGIC, VERSION, len(head)) + head + b"".join(payload.parts)
    return body + struct.pack("<I", zlib.crc32(body))


def write_sqz(path: PathLike, compressed: CompressedModel, meta: CheckpointMeta) -> int:
    """Write ``compressed`` to ``path`` atomically; returns the file size in bytes."""
    data = encode_sqz(compressed, meta)
    atomic_write_bytes(path, data)
    return len(data)


def _parse(data: bytes, where: str) -> tuple[dict[str, Any], memoryview]:
    if len(data) < _PREFIX.size + 4 or not data.startswith(MAGIC):
        raise SqueezelabError(f"{where} is not a .sqz file (no SQZLAB magic); write one with 'squeezelab compress'")
    _, version, head_len = _PREFIX.unpack_from(data)
    if version != VERSION:
        raise SqueezelabError(f"{where} is .sqz version {version}; this squeezelab reads version {VERSION}, upgrade it")
    (stored,) = struct.unpack_from("<I", data, len(data) - 4)
    if zlib.crc32(memoryview(data)[:-4]) != stored:
        raise SqueezelabError(f"{where} is corrupted: CRC-32 checksum mismatch (re-download or re-create it)")
    if _PREFIX.size + head_len > len(data) - 4:
        raise SqueezelabError(f"{where} has a header length ({head_len:,}) past the end of the file")
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(data[_PREFIX.size:_PREFIX.size + head_len], _MAX_HEADER)
        if inflater.unconsumed_tail:
            raise ValueError(f"header larger than {_MAX_HEADER >> 20} MiB")
        header = json.loads(text)
    except (zlib.error, ValueError, RecursionError) as exc:
        raise SqueezelabError(f"{where} has an unreadable header ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise SqueezelabError(f"{where} header is not a {FORMAT} header")
    return header, memoryview(data)[_PREFIX.size + head_len:-4]


def _count(value: Any, what: str, high: int) -> int:
    """``value`` as an int in 0..high, else ValueError (reported as an inconsistent header)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise ValueError(f"{what} = {value!r} is not an integer in 0..{high}")
    return value


def _check_header(header: dict[str, Any], payload_size: int) -> None:
    """Range-check every size, offset and width of a parsed header before anything is allocated."""
    for key in ("codes", "gaps"):
        spec = header["streams"][key]
        alphabet = _count(spec["alphabet"], f"{key} alphabet", 1 << 16)
        nbytes = _count(spec["nbytes"], f"{key} nbytes", payload_size)
        nbits = _count(spec["nbits"], f"{key} nbits", 8 * nbytes)
        _count(spec["count"], f"{key} count", nbits)
        _count(spec["offset"], f"{key} offset", payload_size - nbytes)
        _count(spec["lengths_offset"], f"{key} lengths offset", payload_size - alphabet)
    for entry in header["tensors"]:
        if not isinstance(entry["name"], str) or not isinstance(entry["shape"], list):
            raise ValueError(f"tensor entry {entry!r} lacks a name or shape list")
        numel = 1
        for dim in entry["shape"]:
            numel *= _count(dim, f"{entry['name']} shape", _MAX_NUMEL)
        _count(numel, f"{entry['name']} size", _MAX_NUMEL)
        if entry["kind"] == "raw":
            if entry["dtype"] not in _DTYPES:
                raise ValueError(f"{entry['name']} has unknown dtype {entry['dtype']!r}")
            nbytes = _count(entry["nbytes"], f"{entry['name']} nbytes", payload_size)
            _count(entry["offset"], f"{entry['name']} offset", payload_size - nbytes)
        elif entry["kind"] == "shared":
            bits = _count(entry["bits"], f"{entry['name']} bits", 16)
            _count(entry["entries"], f"{entry['name']} entries", _MAX_NUMEL)
            _count(entry["codebook_offset"], f"{entry['name']} codebook offset", payload_size - 4 * (1 << bits))
            if entry["layout"] not in ("dense", "sparse"):
                raise ValueError(f"{entry['name']} has unknown layout {entry['layout']!r}")
        else:
            raise ValueError(f"{entry['name']} has unknown kind {entry['kind']!r}")
    if not isinstance(header["meta"], dict) or not all(isinstance(v, str) for v in header["meta"].values()):
        raise ValueError("meta is not a table of strings")
    _count(header["bits"], "bits", 16)
    _count(header["index_bits"], "index_bits", 16)


def _read_stream(payload: memoryview, spec: dict[str, int]) -> np.ndarray:
    lengths = np.frombuffer(payload[spec["lengths_offset"]:spec["lengths_offset"] + spec["alphabet"]], np.uint8)
    data = bytes(payload[spec["offset"]:spec["offset"] + spec["nbytes"]])
    return huffman.decode(data, spec["nbits"], spec["count"], lengths)


def decode_sqz(data: bytes, where: str = "the .sqz data") -> tuple[CompressedModel, CheckpointMeta]:
    """Parse and verify ``.sqz`` bytes into the compressed model and its metadata."""
    header, payload = _parse(data, where)
    try:
        _check_header(header, len(payload))
        codes = _read_stream(payload, header["streams"]["codes"])
        gaps = _read_stream(payload, header["streams"]["gaps"])
        shared, raw, order = {}, {}, []
        code_at = gap_at = 0
        for entry in header["tensors"]:
            name, shape = entry["name"], tuple(entry["shape"])
            order.append(name)
            if entry["kind"] == "raw":
                dtype = _DTYPES[entry["dtype"]]
                buf = bytes(payload[entry["offset"]:entry["offset"] + entry["nbytes"]])
                raw[name] = torch.frombuffer(bytearray(buf), dtype=dtype).reshape(shape).clone()
                continue
            size, n = 1 << entry["bits"], entry["entries"]
            book = np.frombuffer(payload[entry["codebook_offset"]:entry["codebook_offset"] + 4 * size], "<f4")
            layer_gaps = None
            if entry["layout"] == "sparse":
                layer_gaps = gaps[gap_at:gap_at + n]
                gap_at += n
            shared[name] = SharedTensor(shape, entry["bits"], torch.from_numpy(book.copy()),
                                        codes[code_at:code_at + n], layer_gaps)
            code_at += n
        meta = CheckpointMeta.from_strings(header["meta"])
        model = CompressedModel(shared, raw, order, header["bits"], header["index_bits"], header.get("density", 1.0))
    except _HEADER_ERRORS as exc:
        raise SqueezelabError(f"{where} has an inconsistent header ({_first_line(exc)})") from None
    return model, meta


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def read_sqz(path: PathLike) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    """Read a ``.sqz`` file: the decoded (quantized) state dict and the checkpoint metadata."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SqueezelabError(f"cannot read {path}: {exc.strerror}") from None
    model, meta = decode_sqz(data, str(path))
    try:
        return model.state_dict(), meta
    except _HEADER_ERRORS as exc:
        raise SqueezelabError(f"{path} has an inconsistent header ({_first_line(exc)})") from None

"""Readers for the three real SqueezeNet weight files (pure numpy, nothing unpickled).

Each reader returns a torchvision-keyed state dict plus a :class:`DecodeStats`
with the byte accounting, so tests can check it against the format
descriptions in ``shared/data/README.md`` sections 2-4:

* Deep Compression ``.net`` (Han et al., "Deep Compression", ICLR 2016, section 2-3):
  per layer an 8-bit codebook, the biases, one code byte per stored weight and
  4-bit relative indices (the count of zeros skipped before each entry).
* OpenVINO IR v6 FP16 ``.xml`` + ``.bin``: byte offsets of each blob in the xml.
* ncnn (pnnx) ``.param`` + ``.bin``: fp16 weights behind a 4-byte tag, fp32 biases.

Layer shapes come from the architecture: the 26 convolutions of SqueezeNet in
module order (conv1, then per Fire squeeze, expand1x1, expand3x3, then conv10)
are the order all three files store them in.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import SqueezelabError
from ..io import PathLike
from ..models import create_model

DEEP_COMPRESSION_CODEBOOK = 256
NCNN_MAGIC = "7767517"
NCNN_FP16_TAG = b"\x47\x6b\x30\x01"


@dataclass
class DecodeStats:
    """What a decoder read: layer names, stored entries, totals and the bytes consumed."""

    layers: list[str] = field(default_factory=list)
    stored_entries: list[int] = field(default_factory=list)
    byte_offsets: list[int] = field(default_factory=list)
    values: int = 0
    nonzeros: int = 0
    bytes_read: int = 0
    file_size: int = 0


def conv_layout(architecture: str, **model_kwargs: Any) -> list[tuple[str, tuple[int, ...], int]]:
    """(state-dict prefix, weight shape OIHW, bias length) of every conv, in module order."""
    with torch.device("meta"):
        model = create_model(architecture, **model_kwargs)
    return [
        (name, tuple(module.weight.shape), module.out_channels)
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d)
    ]


def check_finite(state: dict[str, torch.Tensor], where: PathLike) -> None:
    """A one-line error naming the first floating-point tensor that holds a NaN or an infinity."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise SqueezelabError(f"weights {where}: tensor {name} holds {bad:,} NaN or infinite value(s); the file "
                                  f"is corrupt or the run diverged, use other weights")


def _read_bytes(path: PathLike, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SqueezelabError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


# --- Deep Compression (.net) -------------------------------------------------------------------------------

def _deep_compression_sizes(header: np.ndarray, layout: list[tuple[str, tuple[int, ...], int]]) -> int:
    """Total file size implied by the header (README section 2: 1024 + 4*Cout + N + ceil(N/2) per layer)."""
    total = 4 * len(layout)
    for n, (_, _, cout) in zip(header.tolist(), layout):
        total += 4 * DEEP_COMPRESSION_CODEBOOK + 4 * cout + n + (n + 1) // 2
    return total


def looks_like_deep_compression(data: bytes, architecture: str = "squeezenet1_0") -> bool:
    """True if the 26-entry header fits the architecture (each N_i at most the layer size)."""
    layout = conv_layout(architecture)
    if len(data) < 4 * len(layout):
        return False
    header = np.frombuffer(data, dtype="<u4", count=len(layout))
    return all(0 < n <= int(np.prod(shape)) for n, (_, shape, _) in zip(header.tolist(), layout))


def read_deep_compression(path: PathLike, architecture: str = "squeezenet1_0") -> tuple[dict[str, torch.Tensor],
                                                                                     DecodeStats]:
    """Decode a Deep Compression ``.net`` file (README section 2) into a state dict."""
    data = _read_bytes(path, "Deep Compression file")
    layout = conv_layout(architecture)
    if not looks_like_deep_compression(data, architecture):
        raise SqueezelabError(f"{path} is not a Deep Compression {architecture} file (its 26-layer header does not "
                              f"fit the architecture)")
    header = np.frombuffer(data, dtype="<u4", count=len(layout)).astype(np.int64)
    expected = _deep_compression_sizes(header, layout)
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "has trailing bytes"
        raise SqueezelabError(f"{path} is {state}: the Deep Compression header implies {expected:,} bytes, the file "
                              f"has {len(data):,}; download it again")
    stats = DecodeStats(file_size=len(data))
    state_dict: dict[str, torch.Tensor] = {}
    offset = 4 * len(layout)
    for n, (name, shape, cout) in zip(header.tolist(), layout):
        stats.layers.append(name)
        stats.stored_entries.append(n)
        stats.byte_offsets.append(offset)
        codebook = np.frombuffer(data, dtype="<f4", count=DEEP_COMPRESSION_CODEBOOK, offset=offset)
        offset += 4 * DEEP_COMPRESSION_CODEBOOK
        bias = np.frombuffer(data, dtype="<f4", count=cout, offset=offset)
        offset += 4 * cout
        codes = np.frombuffer(data, dtype=np.uint8, count=n, offset=offset)
        offset += n
        packed = np.frombuffer(data, dtype=np.uint8, count=(n + 1) // 2, offset=offset)
        offset += (n + 1) // 2
        skips = np.empty(2 * packed.size, dtype=np.int64)
        skips[0::2] = packed & 0x0F
        skips[1::2] = packed >> 4
        positions = np.cumsum(skips[:n] + 1) - 1
        size = int(np.prod(shape))
        if positions.size and positions[-1] >= size:
            raise SqueezelabError(f"{path}: layer {name} indexes position {positions[-1]} of {size}; the file is "
                                  f"corrupt")
        flat = np.zeros(size, dtype=np.uint8)
        flat[positions] = codes
        weight = codebook[flat].reshape(shape)
        state_dict[f"{name}.weight"] = torch.from_numpy(weight.astype(np.float32))
        state_dict[f"{name}.bias"] = torch.from_numpy(bias.astype(np.float32))
        stats.values += size + cout
        stats.nonzeros += int(np.count_nonzero(weight))
    stats.bytes_read = offset
    return state_dict, stats


# --- OpenVINO IR (.xml + .bin) -------------------------------------------------------------------------------

_IR_PRECISION = {"FP16": np.dtype("<f2"), "FP32": np.dtype("<f4")}


def read_openvino(xml_path: PathLike, bin_path: PathLike | None = None, architecture: str = "squeezenet1_1"
                  ) -> tuple[dict[str, torch.Tensor], DecodeStats]:
    """Decode an OpenVINO IR (README section 3): every ``Convolution`` layer's blobs, in xml order."""
    xml_path = Path(xml_path)
    bin_path = Path(bin_path) if bin_path is not None else xml_path.with_suffix(".bin")
    try:
        root = ET.fromstring(_read_bytes(xml_path, "OpenVINO xml"))
    except ET.ParseError as exc:
        raise SqueezelabError(f"{xml_path} is not valid XML ({exc})") from None
    if root.tag != "net" or root.find("layers") is None:
        raise SqueezelabError(f"{xml_path} is XML but not an OpenVINO IR (no <net><layers>)")
    if not bin_path.is_file():
        raise SqueezelabError(f"{xml_path} needs its weights file {bin_path} beside it")
    blob = _read_bytes(bin_path, "OpenVINO bin")
    layout = conv_layout(architecture)
    convs = [layer for layer in root.iter("layer") if layer.get("type") == "Convolution"]
    if len(convs) != len(layout):
        raise SqueezelabError(f"{xml_path} has {len(convs)} convolutions, {architecture} has {len(layout)}")
    stats = DecodeStats(file_size=len(blob))
    state_dict: dict[str, torch.Tensor] = {}
    for layer, (name, shape, cout) in zip(convs, layout):
        dtype = _IR_PRECISION.get(layer.get("precision", ""))
        data, blobs = layer.find("data"), layer.find("blobs")
        if dtype is None or data is None or blobs is None:
            raise SqueezelabError(f"{xml_path}: layer {layer.get('name')} has no FP16/FP32 blobs")
        kernel = tuple(int(k) for k in data.get("kernel", "").split(","))
        if int(data.get("output", -1)) != cout or kernel != shape[2:]:
            raise SqueezelabError(f"{xml_path}: layer {layer.get('name')} is {data.get('output')}x{kernel}, "
                                  f"{architecture} expects {shape}")
        stats.layers.append(name)
        weights_node = blobs.find("weights")
        stats.byte_offsets.append(int(weights_node.get("offset", -1)) if weights_node is not None else -1)
        for key, tag, want in (("weight", "weights", shape), ("bias", "biases", (cout,))):
            node = blobs.find(tag)
            if node is None:
                raise SqueezelabError(f"{xml_path}: layer {layer.get('name')} has no <{tag}>")
            offset, size = int(node.get("offset", -1)), int(node.get("size", -1))
            count = int(np.prod(want))
            if size != count * dtype.itemsize or offset < 0 or offset + size > len(blob):
                raise SqueezelabError(f"{bin_path} is truncated or does not match {xml_path.name}: layer "
                                      f"{layer.get('name')} {tag} needs bytes {offset}..{offset + size}, the file has "
                                      f"{len(blob):,}")
            values = np.frombuffer(blob, dtype=dtype, count=count, offset=offset).astype(np.float32)
            state_dict[f"{name}.{key}"] = torch.from_numpy(values.reshape(want))
            stats.bytes_read = max(stats.bytes_read, offset + size)
            stats.values += count
        stats.nonzeros += int(torch.count_nonzero(state_dict[f"{name}.weight"]))
    return state_dict, stats


# --- ncnn (.param + .bin) ------------------------------------------------------------------------------------

def parse_ncnn_param(param_path: PathLike) -> list[tuple[str, str, dict[int, str]]]:
    """(type, name, {key: value}) per layer line of an ncnn text ``.param`` (README section 4)."""
    text = _read_bytes(param_path, "ncnn param").decode("utf-8", errors="replace")
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != [NCNN_MAGIC]:
        raise SqueezelabError(f"{param_path} is not an ncnn .param file (first line is not {NCNN_MAGIC})")
    layers = []
    for parts in lines[2:]:
        try:
            n_in, n_out = int(parts[2]), int(parts[3])
            params = dict(kv.split("=", 1) for kv in parts[4 + n_in + n_out:])
            layers.append((parts[0], parts[1], {int(k): v for k, v in params.items()}))
        except (IndexError, ValueError):
            raise SqueezelabError(f"{param_path}: cannot parse layer line {' '.join(parts)!r}") from None
    return layers


def read_ncnn(param_path: PathLike, bin_path: PathLike | None = None, architecture: str = "squeezenet1_1"
              ) -> tuple[dict[str, torch.Tensor], DecodeStats]:
    """Decode an ncnn model: per Convolution a fp16 tag, fp16 OIHW weights (4-byte aligned), fp32 biases."""
    param_path = Path(param_path)
    bin_path = Path(bin_path) if bin_path is not None else param_path.with_suffix(".bin")
    convs = [(name, p) for kind, name, p in parse_ncnn_param(param_path) if kind == "Convolution"]
    if not bin_path.is_file():
        raise SqueezelabError(f"{param_path} needs its weights file {bin_path} beside it")
    blob = _read_bytes(bin_path, "ncnn bin")
    layout = conv_layout(architecture)
    if len(convs) != len(layout):
        raise SqueezelabError(f"{param_path} has {len(convs)} convolutions, {architecture} has {len(layout)}")
    stats = DecodeStats(file_size=len(blob))
    state_dict: dict[str, torch.Tensor] = {}
    offset = 0
    for (layer_name, params), (name, shape, cout) in zip(convs, layout):
        kw = int(params.get(1, 0))
        kh = int(params.get(11, kw))
        count = int(params.get(6, 0))
        if int(params.get(0, -1)) != cout or (kh, kw) != shape[2:] or count != int(np.prod(shape)):
            raise SqueezelabError(f"{param_path}: layer {layer_name} does not match {architecture} {name} {shape}")
        if int(params.get(5, 0)) != 1:
            raise SqueezelabError(f"{param_path}: layer {layer_name} has no bias (5=0); not a SqueezeNet export")
        stats.layers.append(name)
        stats.byte_offsets.append(offset)
        need = 4 + 2 * count + (-2 * count) % 4 + 4 * cout
        if offset + need > len(blob):
            raise SqueezelabError(f"{bin_path} is truncated: layer {layer_name} needs bytes {offset}..{offset + need}, "
                                  f"the file has {len(blob):,}")
        if blob[offset:offset + 4] != NCNN_FP16_TAG:
            raise SqueezelabError(f"{bin_path}: layer {layer_name} at byte {offset} lacks the fp16 tag "
                                  f"{NCNN_FP16_TAG.hex()}; only fp16 ncnn weights are supported")
        offset += 4
        weight = np.frombuffer(blob, dtype="<f2", count=count, offset=offset).astype(np.float32)
        offset += 2 * count + (-2 * count) % 4
        bias = np.frombuffer(blob, dtype="<f4", count=cout, offset=offset).copy()
        offset += 4 * cout
        state_dict[f"{name}.weight"] = torch.from_numpy(weight.reshape(shape))
        state_dict[f"{name}.bias"] = torch.from_numpy(bias)
        stats.values += count + cout
        stats.nonzeros += int(np.count_nonzero(weight))
    if offset != len(blob):
        raise SqueezelabError(f"{bin_path} has {len(blob) - offset:,} bytes after the last layer; it does not belong "
                              f"to {param_path.name}")
    stats.bytes_read = offset
    return state_dict, stats

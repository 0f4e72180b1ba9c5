"""Caffe ``.caffemodel`` reader: the protobuf wire format decoded in pure Python, blobs mapped by layer name.

A caffemodel is a serialized ``NetParameter`` (BVLC ``src/caffe/proto/caffe.proto``):
current files list ``LayerParameter`` messages in field 100 (name 1, type 2, blobs 7),
legacy ones ``V1LayerParameter`` messages in field 2 (name 4, enum type 5, blobs 6). A
``BlobProto`` holds a ``BlobShape`` (field 7, repeated int64 ``dim`` 1) or the legacy
num/channels/height/width (1-4), and the values as floats (5) or doubles (8).

Each zoo model's parameters carry Caffe layer names: SqueezeNet's are the DeepScale
prototxt names its ``layer_names()`` gives (``conv1``, ``fire2/squeeze1x1`` ... ``conv10``); SqueezeNext's are the
numbered names of its generated prototxts (``ConvolutionK``, ``BatchNormK``, ``ScaleK``
for the K-th conv in module order, ``fc1000``). A prototxt given with ``prototxt=``
names the layers instead. Caffe's ``BatchNorm`` stores mean, variance and a
moving-average factor s (the statistics are blob/s, 0 if s is 0); its ``Scale`` layer
holds gamma and beta.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import numpy as np
import torch
from torch import nn

from ..errors import SqueezelabError
from ..models import create_model

PathLike = Union[str, Path]

#: Zoo models with known Caffe layer names, with the keywords that make them Caffe-exact.
CAFFE_ARCHITECTURES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("squeezenet1_0", {"conv10_padding": 1}),
    ("squeezenet1_1", {}),
    ("sqnxt23_w1", {}),
    ("sqnxt23g_w1", {}),
    ("sqnxt23v5_w1", {}),
    ("sqnxt23_w1_5", {}),
    ("sqnxt23v5_w1_5", {}),
    ("sqnxt23_w2", {}),
    ("sqnxt23v5_w2", {}),
)
#: V1LayerParameter.LayerType values of the layers that can hold parameters.
_V1_TYPES = {4: "Convolution", 14: "InnerProduct"}
_PARAM_TYPES = ("Convolution", "BatchNorm", "Scale", "InnerProduct")


# --- protobuf wire format -------------------------------------------------------------------------------------

class _WireError(Exception):
    """The bytes are not a valid protobuf message (truncated or garbage)."""


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _WireError(pos)
        byte = buf[pos]
        result |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return result, pos


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of each field: an int for varints, a memoryview for the rest."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _WireError(pos)
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire in (1, 2, 5):
            size, pos = (_varint(buf, pos) if wire == 2 else ({1: 8, 5: 4}[wire], pos))
            if pos + size > len(buf):
                raise _WireError(pos)
            value, pos = buf[pos:pos + size], pos + size
        else:
            raise _WireError(pos)
        yield number, wire, value


def _packed_varints(value: Any) -> list[int]:
    if isinstance(value, int):
        return [value]
    out, pos = [], 0
    while pos < len(value):
        item, pos = _varint(value, pos)
        out.append(item)
    return out


@dataclass
class CaffeBlob:
    """One ``BlobProto``: its shape (``legacy`` if from num/channels/height/width) and float32 values."""

    shape: tuple[int, ...]
    data: np.ndarray
    legacy: bool = False


@dataclass
class CaffeLayer:
    """One layer of a caffemodel: name, type (``Convolution``, ``BatchNorm``, ...) and blobs."""

    name: str
    type: str
    blobs: list[CaffeBlob] = field(default_factory=list)


def _decode_blob(buf: memoryview) -> CaffeBlob:
    dims: list[int] = []
    legacy = {1: 1, 2: 1, 3: 1, 4: 1}
    has_legacy = False
    floats: list[np.ndarray] = []
    doubles: list[np.ndarray] = []
    for number, wire, value in _fields(buf):
        if number == 7 and wire == 2:
            dims += [d for n, _, v in _fields(value) if n == 1 for d in _packed_varints(v)]
        elif number in legacy and wire == 0:
            legacy[number], has_legacy = value, True
        elif number == 5 and wire in (2, 5):
            if len(value) % 4:
                raise _WireError(0)
            floats.append(np.frombuffer(value, dtype="<f4"))
        elif number == 8 and wire in (1, 2):
            if len(value) % 8:
                raise _WireError(0)
            doubles.append(np.frombuffer(value, dtype="<f8"))
    data = np.concatenate(floats or doubles or [np.zeros(0, np.float32)]).astype(np.float32)
    if dims:
        return CaffeBlob(tuple(dims), data)
    if has_legacy:
        return CaffeBlob(tuple(legacy[i] for i in (1, 2, 3, 4)), data, legacy=True)
    return CaffeBlob((data.size,), data)


def _decode_layer(buf: memoryview, legacy: bool) -> CaffeLayer:
    name_field, type_field, blob_field = (4, 5, 6) if legacy else (1, 2, 7)
    layer = CaffeLayer("", "")
    for number, wire, value in _fields(buf):
        if number == name_field and wire == 2:
            name = bytes(value).decode("utf-8", errors="replace")
            layer.name = "".join(c if c.isprintable() else "?" for c in name)
        elif number == type_field:
            layer.type = (_V1_TYPES.get(value, f"V1 type {value}") if legacy and wire == 0
                          else bytes(value).decode("utf-8", errors="replace") if wire == 2 else str(value))
        elif number == blob_field and wire == 2:
            layer.blobs.append(_decode_blob(value))
        elif legacy and number == 1 and wire == 2:
            raise SqueezelabError("it uses the V0 layer format (2014); upgrade it with Caffe's "
                                  "upgrade_net_proto_binary first")
    return layer


def read_caffemodel(path: PathLike) -> list[CaffeLayer]:
    """Every layer of a binary caffemodel (``layer`` and legacy ``layers`` fields), in file order."""
    try:
        data = memoryview(Path(path).read_bytes())
    except OSError as exc:
        raise SqueezelabError(f"cannot read caffemodel {path}: {exc.strerror or exc}") from None
    layers = []
    try:
        for number, wire, value in _fields(data):
            if number in (100, 2) and wire == 2:
                layers.append(_decode_layer(value, legacy=number == 2))
    except _WireError:
        raise SqueezelabError(f"{path} is not a valid caffemodel: its protobuf data is truncated or corrupt") from None
    except SqueezelabError as exc:
        raise SqueezelabError(f"{path}: {exc}") from None
    if not layers:
        raise SqueezelabError(f"{path} is not a caffemodel: it holds no Caffe layers")
    return layers


# --- prototxt (text format) -----------------------------------------------------------------------------------

_TOKEN = re.compile(r'#[^\n]*|"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|[{}:]|[^\s{}:#"\']+')


#: Deepest nesting of ``{ }`` a prototxt may have (Caffe's are 3 deep); deeper is refused, not a RecursionError.
MAX_PROTOTXT_DEPTH = 64


def _parse_text(tokens: list[str], pos: int, depth: int = 0) -> tuple[list[tuple[str, Any]], int]:
    """(key, string or nested list) entries from ``pos`` up to the closing brace; its position."""
    if depth > MAX_PROTOTXT_DEPTH:
        raise ValueError(f"nested more than {MAX_PROTOTXT_DEPTH} deep")
    items: list[tuple[str, Any]] = []
    while pos < len(tokens) and tokens[pos] != "}":
        key = tokens[pos]
        if pos + 1 < len(tokens) and tokens[pos + 1] == ":":
            pos += 1
        if pos + 1 >= len(tokens):
            raise ValueError(key)
        if tokens[pos + 1] == "{":
            value, pos = _parse_text(tokens, pos + 2, depth + 1)
            if pos >= len(tokens):
                raise ValueError(key)
            items.append((key, value))
            pos += 1
        else:
            items.append((key, tokens[pos + 1].strip("\"'")))
            pos += 2
    return items, pos


@dataclass(frozen=True)
class PrototxtLayer:
    """A prototxt layer: name, type and geometry (conv: out, kh, kw, stride, ph, pw, group, bias; fc: out, bias)."""

    name: str
    type: str
    geometry: tuple[int, ...] = ()


def _geometry(kind: str, params: dict[str, str]) -> tuple[int, ...]:
    if kind == "InnerProduct":
        return (int(params.get("num_output", 0)), int(params.get("bias_term", "true") == "true"))
    if kind != "Convolution":
        return ()
    kernel, pad = params.get("kernel_size", "0"), params.get("pad", "0")
    return (int(params.get("num_output", 0)), int(params.get("kernel_h", kernel)), int(params.get("kernel_w", kernel)),
            int(params.get("stride", 1)), int(params.get("pad_h", pad)), int(params.get("pad_w", pad)),
            int(params.get("group", 1)), int(params.get("bias_term", "true") == "true"))


def read_prototxt(path: PathLike) -> list[PrototxtLayer]:
    """Every layer of a prototxt (``layer`` or legacy ``layers``), in order."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise SqueezelabError(f"cannot read prototxt {path}: {exc.strerror or exc}") from None
    tokens = [t for t in _TOKEN.findall(text) if not t.startswith("#")]
    try:
        items, pos = _parse_text(tokens, 0)
    except ValueError as exc:
        reason = str(exc) if str(exc).startswith("nested") else f"unfinished entry {exc}"
        raise SqueezelabError(f"{path} is not a valid prototxt ({reason})") from None
    if pos < len(tokens):
        raise SqueezelabError(f"{path} is not a valid prototxt (unmatched '}}')")
    layers = []
    for key, body in items:
        if key not in ("layer", "layers") or not isinstance(body, list):
            continue
        fields = dict(item for item in body if isinstance(item[1], str))
        kind = {"CONVOLUTION": "Convolution", "INNER_PRODUCT": "InnerProduct"}.get(fields.get("type", ""),
                                                                                   fields.get("type", ""))
        params = {k: v for section, sub in body if section.endswith("_param") and isinstance(sub, list)
                  for k, v in sub if isinstance(v, str)}
        try:
            layers.append(PrototxtLayer(fields.get("name", ""), kind, _geometry(kind, params)))
        except ValueError:
            raise SqueezelabError(f"{path}: layer {fields.get('name', '?')} has a non-integer size, stride, pad or "
                                  f"group") from None
    if not any(layer.type == "Convolution" for layer in layers):
        raise SqueezelabError(f"{path} is not a Caffe network definition: it has no Convolution layers")
    return layers


# --- the zoo models' Caffe layers -----------------------------------------------------------------------------

@dataclass(frozen=True)
class CaffeSlot:
    """A Caffe layer a zoo model expects: its name, type, module path, blob shapes and prototxt geometry."""

    name: str
    type: str
    module: str
    shapes: tuple[tuple[int, ...], ...]
    geometry: tuple[int, ...] = ()


def _module_slots(path: str, module: nn.Module) -> list[tuple[str, str, tuple[tuple[int, ...], ...], tuple[int, ...]]]:
    if isinstance(module, nn.Conv2d):
        shapes = (tuple(module.weight.shape),) + (((module.out_channels,),) if module.bias is not None else ())
        geometry = (module.out_channels, *module.kernel_size, module.stride[0], *module.padding, module.groups,
                    int(module.bias is not None))
        return [("Convolution", path, shapes, geometry)]
    if isinstance(module, nn.BatchNorm2d):
        c = (module.num_features,)
        return [("BatchNorm", path, (c, c, (1,)), ()), ("Scale", path, (c, c), ())]
    if isinstance(module, nn.Linear):
        shapes = (tuple(module.weight.shape),) + (((module.out_features,),) if module.bias is not None else ())
        return [("InnerProduct", path, shapes, (module.out_features, int(module.bias is not None)))]
    return []


def caffe_layout(architecture: str, **model_kwargs: Any) -> list[CaffeSlot]:
    """The Caffe layers of a zoo model, named as its official caffemodel/prototxt names them, in module order."""
    return list(_cached_layout(architecture, tuple(sorted(model_kwargs.items()))))


@functools.lru_cache(maxsize=None)
def _cached_layout(architecture: str, model_kwargs: tuple[tuple[str, Any], ...]) -> tuple[CaffeSlot, ...]:
    with torch.device("meta"):
        model = create_model(architecture, **dict(model_kwargs))
    raw = [slot for path, module in model.named_modules() for slot in _module_slots(path, module)]
    counts: dict[str, int] = {}
    slots = []
    names = model.layer_names() if architecture.startswith("squeezenet") else {}
    for kind, path, shapes, geometry in raw:
        counts[kind] = counts.get(kind, 0) + 1
        if names:  # SqueezeNet's prototxt names are the model's own (conv1, fire2/squeeze1x1, ..., conv10)
            name = names[path]
        else:
            name = "fc1000" if kind == "InnerProduct" else f"{kind}{counts[kind]}"
        slots.append(CaffeSlot(name, kind, path, shapes, geometry))
    return tuple(slots)


def _from_prototxt(prototxt: PathLike, candidates: list[tuple[str, dict[str, Any]]]
                   ) -> tuple[str, dict[str, Any], list[CaffeSlot]]:
    """The zoo model whose layers have the prototxt's order, types and geometry, with the prototxt's names."""
    every = read_prototxt(prototxt)
    layers = [layer for layer in every if layer.type in _PARAM_TYPES]
    bypass = any(layer.type == "Eltwise" for layer in every)
    for arch, kwargs in candidates:
        slots = caffe_layout(arch, **kwargs)
        if len(slots) == len(layers) and all(s.type == p.type and (not p.geometry or s.geometry == p.geometry)
                                             for s, p in zip(slots, layers)):
            if bypass and arch.startswith("squeezenet"):
                raise SqueezelabError(f"{prototxt} describes a SqueezeNet with bypass (Eltwise) layers; only the "
                                      f"plain SqueezeNet v1.0/v1.1 and SqueezeNext caffemodels are supported")
            return arch, kwargs, [CaffeSlot(p.name, s.type, s.module, s.shapes, s.geometry)
                                  for s, p in zip(slots, layers)]
    names = ", ".join(arch for arch, _ in candidates)
    raise SqueezelabError(f"{prototxt} describes none of {names}: its {len(layers)} Convolution/BatchNorm/Scale/"
                          f"InnerProduct layers differ in order, type or geometry")


# --- matching a caffemodel to a zoo model ---------------------------------------------------------------------

def _blob_fits(blob: CaffeBlob, shape: tuple[int, ...]) -> bool:
    if blob.legacy:
        return len(shape) <= 4 and blob.shape == (1,) * (4 - len(shape)) + shape
    return blob.shape == shape


def _problem(layer: Optional[CaffeLayer], slot: CaffeSlot, arch: str) -> Optional[str]:
    """Why a caffemodel layer does not fit a slot, or None."""
    if layer is None:
        return f"layer {slot.name} ({slot.type}) is missing; {arch} needs it for {slot.module}"
    if layer.type != slot.type:
        return f"layer {slot.name} is a {layer.type} layer; {arch} expects {slot.type} for {slot.module}"
    optional_last = slot.type == "Scale"  # a Scale without bias_term has no beta blob
    if not (len(layer.blobs) == len(slot.shapes) or (optional_last and len(layer.blobs) == len(slot.shapes) - 1)):
        return f"layer {slot.name} has {len(layer.blobs)} blobs; {arch} expects {len(slot.shapes)}"
    for i, (blob, shape) in enumerate(zip(layer.blobs, slot.shapes)):
        if not _blob_fits(blob, shape):
            return f"layer {slot.name} blob {i} has shape {list(blob.shape)}; {arch} expects {list(shape)}"
        if blob.data.size != int(np.prod(blob.shape)):
            return f"layer {slot.name} blob {i} holds {blob.data.size} values, its shape {list(blob.shape)} says " \
                   f"{int(np.prod(blob.shape))}"
    return None


def _state_dict(by_name: dict[str, CaffeLayer], slots: list[CaffeSlot]) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for slot in slots:
        values = [torch.from_numpy(b.data.reshape(shape).copy()) for b, shape in zip(by_name[slot.name].blobs,
                                                                                   slot.shapes)]
        if slot.type in ("Convolution", "InnerProduct"):
            state[f"{slot.module}.weight"] = values[0]
            if len(values) > 1:
                state[f"{slot.module}.bias"] = values[1]
        elif slot.type == "BatchNorm":
            mean, var, factor = values
            scale = 0.0 if float(factor[0]) == 0.0 else 1.0 / float(factor[0])
            state[f"{slot.module}.running_mean"] = mean * scale
            state[f"{slot.module}.running_var"] = var * scale
            state[f"{slot.module}.num_batches_tracked"] = torch.tensor(0)
        else:
            state[f"{slot.module}.weight"] = values[0]
            state[f"{slot.module}.bias"] = values[1] if len(values) > 1 else torch.zeros_like(values[0])
    return state


@dataclass
class CaffeWeights:
    """A caffemodel read into a zoo model: its state dict, architecture and ``create_model`` keywords."""

    state_dict: dict[str, torch.Tensor]
    architecture: str
    model_kwargs: dict[str, Any]
    layers: list[str]


def load_caffemodel(path: PathLike, prototxt: Optional[PathLike] = None, architecture: Optional[str] = None
                    ) -> CaffeWeights:
    """Read a caffemodel into the zoo model it fits (inferred from its layer names and blob shapes).

    ``prototxt`` supplies the layer names (and restricts the candidates to the model it describes);
    ``architecture`` restricts the candidates to one zoo name. Any missing, extra or misshapen layer
    is a one-line :class:`SqueezelabError` naming the layer.
    """
    layers = read_caffemodel(path)
    by_name: dict[str, CaffeLayer] = {}
    for layer in layers:
        if layer.blobs:
            if layer.name in by_name:
                raise SqueezelabError(f"{path}: layer {layer.name} appears twice")
            by_name[layer.name] = layer
    candidates = [(a, k) for a, k in CAFFE_ARCHITECTURES if architecture is None or a == architecture]
    if not candidates:
        raise SqueezelabError(f"no Caffe layer names are known for {architecture}; use one of "
                              f"{', '.join(a for a, _ in CAFFE_ARCHITECTURES)}")
    family = "squeezenet" if "fire2/squeeze1x1" in by_name else "sqnxt" if "Convolution1" in by_name else ""
    if prototxt is None and any(a.startswith(family) for a, _ in candidates):
        candidates = [(a, k) for a, k in candidates if a.startswith(family)]
    if prototxt is not None:
        arch, kwargs, slots = _from_prototxt(prototxt, candidates)
        layouts = [(arch, kwargs, slots)]
    else:
        layouts = [(a, k, caffe_layout(a, **k)) for a, k in candidates]
    best: Optional[tuple[int, str, str]] = None
    for arch, kwargs, slots in layouts:
        problems = [p for p in (_problem(by_name.get(s.name), s, arch) for s in slots) if p]
        expected = {s.name for s in slots}
        extra = [layer for name, layer in by_name.items() if name not in expected]
        if not problems and not extra:
            return CaffeWeights(_state_dict(by_name, slots), arch, dict(kwargs), [s.name for s in slots])
        score = sum(s.name in by_name for s in slots) - len(problems) - len(extra)
        first = problems[0] if problems else (f"layer {extra[0].name} ({extra[0].type}, {len(extra[0].blobs)} "
                                              f"blobs) is not part of {arch}")
        if best is None or score > best[0]:
            best = (score, arch, first)
    assert best is not None
    raise SqueezelabError(f"{path} does not fit {best[1]}: {best[2]}")

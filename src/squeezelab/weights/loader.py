"""``load_weights`` / ``load_model``: one entry point for every weights spec.

A spec is a registered name (``squeezenet1_1.torchvision``, fetched and
sha256-checked by :mod:`.registry`) or a path. Paths are recognised by their
content, not their extension: a native safetensors checkpoint, a compressed
``.sqz`` file, an ONNX model, a Deep Compression ``.net``, an OpenVINO ``.xml``
or ``.bin`` or an ncnn ``.param`` or ``.bin`` (each with its partner beside it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from ..errors import SqueezelabError
from ..io import PathLike, sha256_file
from ..models import create_model, resolve_name
from .checkpoint import CheckpointMeta, read_checkpoint, save_checkpoint
from .formats import NCNN_FP16_TAG, NCNN_MAGIC, looks_like_deep_compression, read_deep_compression, read_ncnn, \
    read_openvino
from .imagenet import imagenet_categories
from .registry import WEIGHTS, entry_for_format, entry_for_sha256, fetch_weights

SQZ_MAGIC = b"SQZLAB\x00"
SOURCE_FORMATS = ("deep-compression", "openvino", "ncnn")
SUPPORTED = ("a squeezelab .safetensors checkpoint, a .sqz file, an .onnx model, a Deep Compression .net, "
             "an OpenVINO .xml/.bin or an ncnn .param/.bin")

_READERS: dict[str, Callable[..., tuple[dict[str, torch.Tensor], Any]]] = {
    "deep-compression": read_deep_compression,
    "openvino": read_openvino,
    "ncnn": read_ncnn,
}


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 8 + header_len <= size


def _is_onnx(path: Path, head: bytes) -> bool:
    if path.suffix.lower() != ".onnx" and not head.startswith(b"\x08"):
        return False
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - any parse failure means "not ONNX"
        return False
    return len(proto.graph.node) > 0


def detect_format(path: PathLike) -> tuple[str, Path]:
    """(format, main path) of a weights file, from its content; a one-line error if unsupported.

    Formats: ``safetensors``, ``sqz``, ``onnx``, ``deep-compression``, ``openvino``, ``ncnn``. For a
    ``.bin`` whose ``.xml`` / ``.param`` lies beside it, the main path is that partner.
    """
    path = Path(path)
    if not path.is_file():
        raise SqueezelabError(f"weights file {path} does not exist; pass a registered name or an existing file")
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(64)
    if head.startswith(SQZ_MAGIC):
        return "sqz", path
    if _is_safetensors(head, size):
        return "safetensors", path
    text = head.lstrip()
    if text.startswith(NCNN_MAGIC.encode()):
        return "ncnn", path
    if text.startswith(b"<?xml") or text.startswith(b"<net"):
        return "openvino", path
    for partner_suffix, fmt, magic in ((".xml", "openvino", b"<"), (".param", "ncnn", NCNN_MAGIC.encode())):
        partner = path.with_suffix(partner_suffix)
        if path.suffix.lower() == ".bin" and partner.is_file():
            with open(partner, "rb") as handle:
                if handle.read(64).lstrip().startswith(magic):
                    return fmt, partner
    if head.startswith(NCNN_FP16_TAG):
        raise SqueezelabError(f"{path} looks like ncnn weights but its .param is not beside it as "
                              f"{path.with_suffix('.param').name}")
    if _is_onnx(path, head):
        return "onnx", path
    if looks_like_deep_compression(path.read_bytes()[:104]):
        return "deep-compression", path
    raise SqueezelabError(f"{path} is not a supported weights file; expected {SUPPORTED}")


def _source_meta(fmt: str, main: Path) -> CheckpointMeta:
    """The metadata a source-format file implies (its registry entry's architecture and preprocessing)."""
    files = [main]
    if fmt != "deep-compression":
        files.append(main.with_suffix(".bin"))
        if not files[1].is_file():
            raise SqueezelabError(f"{main} needs its weights file {files[1].name} beside it")
    hashes = {f.name: sha256_file(f) for f in files}
    known = entry_for_sha256(hashes[main.name])
    entry = known if known is not None and known.source_format == fmt else entry_for_format(fmt)
    assert entry is not None
    source = entry.files[0].url if known is entry else str(main)
    extra = {"source_format": fmt, "source_files": json.dumps(hashes)}
    if known is entry:
        extra["weights"] = entry.name
    return CheckpointMeta(
        architecture=entry.architecture,
        num_classes=1000,
        model_kwargs=dict(entry.model_kwargs),
        preprocess=entry.preprocess,
        categories=imagenet_categories(),
        source=source,
        source_sha256=hashes[main.name],
        extra=extra,
    )


def _onnx_meta(path: Path) -> CheckpointMeta:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in proto.metadata_props}
    if "architecture" not in props:
        raise SqueezelabError(f"{path} has no squeezelab metadata (architecture, preprocess); export it with "
                              f"'squeezelab export' or load the checkpoint it came from")
    return CheckpointMeta.from_strings(props)


def _read_onnx(path: Path) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    state = {init.name: torch.from_numpy(np.array(numpy_helper.to_array(init))) for init in proto.graph.initializer}
    return state, _onnx_meta(path)


def _read_sqz(path: Path) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    from ..compress.sqz import read_sqz  # lazy: the compress stage imports this package

    return read_sqz(path)


def load_weights(spec: str | PathLike) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    """A state dict and its metadata from a registered name or a path to any supported file."""
    path = Path(spec)
    if not path.exists():
        if str(spec).strip().lower() not in WEIGHTS:
            raise SqueezelabError(f"weights {spec!r} is neither an existing file nor a registered name; registered: "
                                  f"{', '.join(sorted(WEIGHTS))}")
        path = fetch_weights(str(spec))
    fmt, main = detect_format(path)
    if fmt == "safetensors":
        return read_checkpoint(main)
    if fmt == "sqz":
        return _read_sqz(main)
    if fmt == "onnx":
        return _read_onnx(main)
    meta = _source_meta(fmt, main)
    state, _ = _READERS[fmt](main, architecture=meta.architecture)
    return state, meta


def check_architecture(meta: CheckpointMeta, model: Optional[str], weights: str | PathLike) -> None:
    """A one-line error if ``model`` is given and is not the weights' architecture."""
    if model is not None and resolve_name(model) != resolve_name(meta.architecture):
        raise SqueezelabError(f"weights {weights} are for {meta.architecture}, not {resolve_name(model)}; use model "
                              f"{meta.architecture} or other weights")


def load_model(weights: str | PathLike, model: Optional[str] = None, **overrides: Any
               ) -> tuple[nn.Module, CheckpointMeta]:
    """Build the weights' architecture (checked against ``model`` if given), load them strictly, eval mode.

    ``overrides`` are extra ``create_model`` keywords (e.g. ``dropout``); ones that change the
    architecture make the load fail with a one-line error. ONNX files load as an ONNX Runtime module.
    """
    path = Path(weights)
    if path.is_file() and detect_format(path)[0] == "onnx":
        from ..export.runtime import OnnxRuntimeModule  # lazy: onnxruntime is only needed here

        meta = _onnx_meta(path)
        check_architecture(meta, model, weights)
        return OnnxRuntimeModule(path).eval(), meta
    state, meta = load_weights(weights)
    check_architecture(meta, model, weights)
    kwargs = {**meta.model_kwargs, **overrides}
    # Built on the meta device (no random init, no probing cost), then the loaded tensors are assigned.
    with torch.device("meta"):
        net = create_model(meta.architecture, num_classes=meta.num_classes, in_chans=meta.in_chans, **kwargs)
    expected = net.state_dict()
    state = {k: v.to(expected[k].dtype) if k in expected and v.is_floating_point() else v for k, v in state.items()}
    try:
        net.load_state_dict(state, strict=True, assign=True)
        if any(t.is_meta for t in (*net.parameters(), *net.buffers())):
            net = create_model(meta.architecture, num_classes=meta.num_classes, in_chans=meta.in_chans, **kwargs)
            net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = str(exc).splitlines()
        reason = detail[1].strip() if len(detail) > 1 else (detail[0] if detail else "state dict mismatch")
        raise SqueezelabError(f"weights {weights} do not fit {meta.architecture} {kwargs or ''}: {reason}") from None
    return net.eval(), meta


def convert_weights(source: PathLike, output: PathLike, source_format: Optional[str] = None) -> CheckpointMeta:
    """Convert a Deep Compression / OpenVINO / ncnn file to a native checkpoint at ``output``."""
    fmt, main = detect_format(source)
    if fmt not in SOURCE_FORMATS:
        raise SqueezelabError(f"{source} is already a {fmt} file, not one of {', '.join(SOURCE_FORMATS)}; it "
                              f"needs no conversion")
    if source_format is not None and source_format != fmt:
        raise SqueezelabError(f"{source} holds {fmt} weights, not {source_format}; use --from {fmt}")
    state, meta = load_weights(main)
    save_checkpoint(output, state, meta)
    return meta

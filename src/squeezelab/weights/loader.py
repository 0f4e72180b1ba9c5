"""``build_model`` and ``load_weights``: one entry point for every weights spec.

A spec is a registered name (``squeezenet1_1.torchvision``, fetched and
sha256-checked by :mod:`.registry`) or a path. Paths are recognised by their
content, not their extension: a native safetensors checkpoint, a compressed
``.sqz`` file, an ONNX model, a Deep Compression ``.net``, an OpenVINO ``.xml``
or ``.bin`` or an ncnn ``.param`` or ``.bin`` (each with its partner beside it).

Derived formats that a stage writes (``.sqz`` by compress, ``.onnx`` by export)
are read by that stage's code, which this core module names in
:data:`WEIGHTS_LOADERS` as ``"module:function"`` strings (like package entry
points) and imports only when such a file is opened; it never imports a stage.
:func:`build_model` is the one way to make a model from a weights spec or an architecture name; it sets
``model.pretrained_cfg``. ``create_model`` (``squeezelab.create_model``) is the same with the architecture
named first, and always returns a PyTorch classifier.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

import torch
from torch import nn

from ..data.preprocess import CAFFE
from ..errors import SqueezelabError
from ..extras import require
from ..io import PathLike, sha256_file
from ..models import resolve_model, resolve_name
from .checkpoint import CheckpointMeta, read_checkpoint, save_checkpoint
from .caffe import load_caffemodel
from .formats import NCNN_FP16_TAG, NCNN_MAGIC, check_finite, looks_like_deep_compression, read_deep_compression, \
    read_ncnn, read_openvino
from ..data.imagenet import imagenet_categories
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

#: A loader given as a callable or as a lazy ``"package.module:function"`` string.
Target = Union[str, Callable[..., Any]]


@dataclass(frozen=True)
class WeightsLoader:
    """How to open one derived format: ``read(path) -> (state_dict, CheckpointMeta)`` and, for files that run as
    they are (ONNX), ``run(path) -> (module, CheckpointMeta)`` named ``run_name`` in messages."""

    read: Target
    run: Optional[Target] = None
    run_name: str = ""


#: Format -> loader; the stages' own readers, named as strings so that this module never imports them.
WEIGHTS_LOADERS: dict[str, WeightsLoader] = {
    "sqz": WeightsLoader("squeezelab.compress.sqz:read_sqz"),
    "onnx": WeightsLoader("squeezelab.export.load:read_onnx_weights", "squeezelab.export.load:load_onnx",
                          "squeezelab.export.load_onnx"),
}


def register_weights_loader(fmt: str, read: Target, run: Optional[Target] = None, run_name: str = "") -> None:
    """Register (or replace) the loader of a format that :func:`detect_format` recognises.

    ``run_name`` (default: ``run``'s dotted name) is the call that ``create_model``'s error message suggests.
    """
    if run is not None and not run_name:
        run_name = run.replace(":", ".") if isinstance(run, str) else f"{run.__module__}.{run.__qualname__}"
    WEIGHTS_LOADERS[fmt] = WeightsLoader(read, run, run_name)


def _resolve(target: Target) -> Callable[..., Any]:
    if callable(target):
        return target
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 8 + header_len <= size


def _is_onnx(path: Path, head: bytes) -> bool:
    if path.suffix.lower() != ".onnx" and not head.startswith(b"\x08"):
        return False
    onnx = require("onnx", f"reading {path}")

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
    if path.is_dir():
        raise SqueezelabError(f"weights {path} is a folder; pass a weights file inside it or a registered name")
    if path.exists() and not path.is_file():
        raise SqueezelabError(f"weights {path} is not a regular file; pass a weights file or a registered name")
    if not path.is_file():
        raise SqueezelabError(f"weights file {path} does not exist; pass a registered name or an existing file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError as exc:
        raise SqueezelabError(f"cannot read weights file {path}: {exc.strerror or exc}") from None
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
        categories=list(entry.categories),
        source=source,
        source_sha256=hashes[main.name],
        extra=extra,
    )


def load_weights(spec: str | PathLike) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    """A state dict and its metadata from a registered name or a path to any supported file."""
    path = Path(spec)
    registered = None
    if not path.exists():
        registered = str(spec).strip().lower()
        if registered not in WEIGHTS:
            raise SqueezelabError(f"weights {spec!r} is neither an existing file nor a registered name; registered: "
                                  f"{', '.join(sorted(WEIGHTS))}")
        path = fetch_weights(registered)
    fmt, main = detect_format(path)
    if fmt == "safetensors":
        state, meta = read_checkpoint(main)
    elif fmt in WEIGHTS_LOADERS:
        state, meta = _resolve(WEIGHTS_LOADERS[fmt].read)(main)
    else:
        meta = _source_meta(fmt, main)
        state, _ = _READERS[fmt](main, architecture=meta.architecture)
    check_finite(state, main)
    if registered is not None:
        meta.extra.setdefault("weights", registered)
    return state, meta


def check_architecture(meta: CheckpointMeta, model: Optional[str], weights: str | PathLike) -> None:
    """A one-line error if ``model`` is given and is not the weights' architecture."""
    if model is not None and resolve_model(model).name != resolve_name(meta.architecture):
        raise SqueezelabError(f"weights {weights} are for {meta.architecture}, not {resolve_model(model).name}; use model "
                              f"{meta.architecture} or other weights")


def _state_into(net: nn.Module, state: Mapping[str, torch.Tensor], what: str, description: str) -> nn.Module:
    """Load a copy of ``state`` strictly into ``net`` (built on the meta device: the copies are assigned).

    Copies, so the model never aliases the caller's tensors: compression and calibration change a model's
    weights in place while the state they came from must stay the parent."""
    expected = net.state_dict()
    state = {k: v.to(dtype=expected[k].dtype if k in expected and v.is_floating_point() else v.dtype, copy=True)
             for k, v in state.items()}
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        detail = str(exc).splitlines()
        reason = detail[1].strip() if len(detail) > 1 else (detail[0] if detail else "state dict mismatch")
        raise SqueezelabError(f"{what} do not fit {description}: {reason}") from None
    return net


def model_from_state(state: Mapping[str, torch.Tensor], cfg: CheckpointMeta, *, what: str = "the weights",
                     **overrides: Any) -> nn.Module:
    """The model of ``cfg`` holding ``state`` (loaded strictly), in eval mode, with ``pretrained_cfg`` = ``cfg``.

    What :func:`build_model` does once the weights are read; stages that change a state dict
    (compression, fine-tuning) rebuild their models with it. ``overrides`` are architecture keywords
    (e.g. ``dropout``), recorded in the config's ``model_kwargs``; ``what`` names the weights in errors.
    """
    cfg = replace(cfg, model_kwargs={**cfg.model_kwargs, **overrides})
    net = _state_into(architecture_of(cfg, meta=True), state, what,  # meta: no random init, tensors are assigned
                      f"{cfg.architecture} {cfg.model_kwargs or ''}".strip())
    if any(t.is_meta for t in (*net.parameters(), *net.buffers())):  # a buffer the state dict does not hold
        net = _state_into(architecture_of(cfg), state, what, cfg.architecture)
    net.pretrained_cfg = cfg
    return net.eval()


def architecture_of(cfg: CheckpointMeta, meta: bool = False) -> nn.Module:
    """The untrained model ``cfg`` describes, built through the one name resolver (:func:`resolve_model`)."""
    channels = {} if cfg.in_chans == 3 else {"in_chans": cfg.in_chans}  # torchvision's models take no in_chans
    return resolve_model(cfg.architecture, num_classes=cfg.num_classes, **channels, **cfg.model_kwargs).build(meta)


def _is_weights_spec(spec: str | PathLike) -> bool:
    return Path(spec).exists() or str(spec).strip().lower() in WEIGHTS


def build_model(spec: str | PathLike, num_classes: Optional[int] = None, *, architecture: Optional[str] = None,
                **overrides: Any) -> nn.Module:
    """The one way to make a model: from registered weights, a weights file or a bare architecture name.

    Every model it returns carries ``model.pretrained_cfg`` (a :class:`CheckpointMeta`, timm's
    ``PretrainedCfg``): architecture and options, classes, channels, input size and the preprocessing
    of the weights, which ``predict``, ``eval``, ``optimize``, ``quantize``, ``export``, ``compress`` and
    ``train --pretrained`` read (:func:`~squeezelab.weights.checkpoint.pretrained_cfg_of`).

    Args:
        spec: a registered weights name (``"squeezenet1_1.caffe"``, see :func:`list_weights`), a path to
            any supported weights file (``docs/weights.md``), or an architecture name or alias
            or model spec for :func:`~squeezelab.models.resolve_model` (``"squeezenet1_1"``,
            ``"sqnxt23v5_w1:width=1.5"``, ``"resnet18"``: random initialisation, ``preprocess`` None).
            A path that exists wins.
        num_classes: classifier outputs; for weights of another class count the classifier is replaced by a
            fresh one (and the config's ``categories`` dropped). Default: the weights' own (1000 for a bare
            architecture).
        architecture: if given, the weights must be for this architecture (one-line error otherwise).
        overrides: architecture keywords (``dropout=0.2``, ``small_input=True``; ``in_chans`` for a bare
            architecture); ones that change the shapes make weights fail to load, with a one-line error.

    Weights load strictly and the model is in eval mode. An ONNX file comes back as an ONNX Runtime
    module (:func:`squeezelab.export.load_onnx`) with its stored config.
    """
    if not _is_weights_spec(spec):
        kwargs = {k: v for k, v in overrides.items() if k != "in_chans"}
        try:
            model_spec = resolve_model(str(spec), **kwargs)
        except SqueezelabError as exc:
            raise SqueezelabError(f"{spec!r} is neither a weights file nor registered weights "
                                  f"({', '.join(sorted(WEIGHTS))}), and as a model name: {exc}") from None
        if architecture is not None and resolve_model(architecture).name != model_spec.name:
            raise SqueezelabError(f"model {spec!r} is not {resolve_model(architecture).name}")
        cfg = CheckpointMeta(model_spec.name, 1000 if num_classes is None else num_classes,
                             int(overrides.get("in_chans", 3)), model_kwargs=model_spec.model_kwargs)
        net = architecture_of(cfg)
        net.pretrained_cfg = cfg
        return net
    runner = _runnable_loader(spec)
    if runner is not None:
        module, meta = _resolve(runner.run)(Path(spec))
        check_architecture(meta, architecture, spec)
        if num_classes not in (None, meta.num_classes):
            raise SqueezelabError(f"{spec} is an exported model with {meta.num_classes} classes; its classifier "
                                  f"cannot be replaced, start from the checkpoint it was exported from")
        module.pretrained_cfg = meta
        return module
    state, meta = load_weights(spec)
    check_architecture(meta, architecture, spec)
    net = model_from_state(state, meta, what=f"weights {spec}", **overrides)
    if num_classes not in (None, meta.num_classes):
        net.reset_classifier(num_classes)
        net.pretrained_cfg = replace(net.pretrained_cfg, num_classes=num_classes, categories=[])
    return net


def _runnable_loader(weights: str | PathLike) -> Optional[WeightsLoader]:
    """The loader of ``weights`` if it is a file of a format that runs as it is (ONNX), else None."""
    path = Path(weights)
    if not path.is_file():
        return None
    loader = WEIGHTS_LOADERS.get(detect_format(path)[0])
    return loader if loader is not None and loader.run is not None else None


def create_model(name: str, *, num_classes: int = 1000, in_chans: int = 3, weights: Optional[str | PathLike] = None,
                 **overrides: Any) -> nn.Module:
    """Build a registered model (``squeezelab.create_model``), optionally with weights; always a PyTorch classifier.

    :func:`build_model` with the architecture named first, as ``timm.create_model``; the model carries
    ``pretrained_cfg``.

    Args:
        name: canonical name or paper alias, e.g. ``"squeezenet1_1"`` or ``"1.0-SqNxt-23v5"``.
        num_classes: classifier outputs.
        in_chans: input channels (1 for grey images).
        weights: a registered weights name or a weights file (``docs/weights.md``); the model is built
            from the weights' metadata (checked against ``name``), loaded and put in eval mode; a
            ``num_classes`` other than the default and the weights' own gets a fresh classifier.
            An ONNX file is not a PyTorch model: run it with ``squeezelab.export.load_onnx``.
        overrides: architecture keyword arguments, e.g. ``small_input=True`` or ``dropout=0.2``.
    """
    if weights is None:
        return build_model(name, num_classes, in_chans=in_chans, **overrides)
    runner = _runnable_loader(weights)
    if runner is not None:
        raise SqueezelabError(f"{weights} is an exported model, not PyTorch weights; run it with "
                              f"{runner.run_name}({str(weights)!r}) or pass the checkpoint it was exported from")
    return build_model(weights, None if num_classes == 1000 else num_classes, architecture=name, **overrides)


def convert_weights(source: PathLike, output: PathLike, source_format: Optional[str] = None) -> CheckpointMeta:
    """Convert a Deep Compression / OpenVINO / ncnn file to a native checkpoint at ``output``."""
    fmt, main = detect_format(source)
    if fmt not in SOURCE_FORMATS:
        raise SqueezelabError(f"{source} is already a {fmt} file, not one of {', '.join(SOURCE_FORMATS)}; it "
                              f"needs no conversion")
    if source_format is not None and source_format != fmt:
        raise SqueezelabError(f"{source} holds {fmt} weights, not {source_format}; use --from {fmt}")
    state, meta = load_weights(main)
    save_checkpoint(output, state, meta, inputs=[source, main, main.with_suffix(".bin")])
    return meta


def convert_caffemodel(source: PathLike, output: PathLike, prototxt: Optional[PathLike] = None) -> CheckpointMeta:
    """Convert a Caffe ``.caffemodel`` to a native checkpoint with the Caffe preprocessing (BGR, mean subtraction).

    The zoo model is inferred from the layer names and blob shapes (or from ``prototxt``); the preprocessing
    is that of the architecture's registered Caffe weights, else the Caffe ImageNet default.
    """
    weights = load_caffemodel(source, prototxt)
    check_finite(weights.state_dict, source)
    entry = next((e for e in WEIGHTS.values() if e.architecture == weights.architecture
                  and e.preprocess.channel_order == "BGR"), None)
    files = [Path(source)] + ([Path(prototxt)] if prototxt is not None else [])
    hashes = {f.name: sha256_file(f) for f in files}
    meta = CheckpointMeta(architecture=weights.architecture, num_classes=1000, model_kwargs=weights.model_kwargs,
                          preprocess=entry.preprocess if entry is not None else CAFFE,
                          categories=imagenet_categories(), source=str(source), source_sha256=hashes[files[0].name],
                          extra={"source_format": "caffe", "source_files": json.dumps(hashes)})
    save_checkpoint(output, weights.state_dict, meta)
    return meta

"""Per-layer profile of a model: shapes, parameters, MACs, activation bytes, totals.

A view of the layer trace (:func:`squeezelab.models.trace`): MACs and shapes are the
trace's (one MAC per multiply-add of Conv2d and Linear, one image), parameters and
nonzero weights are read from the modules. Rows are the model's modules in definition
order: a *block* row for every unit the model names that holds layers (``fire2``,
``stage1/block1``; :meth:`~squeezelab.models.ClassifierModel.layer_names`), with the
sums of its layers, and a *layer* row for every convolution, linear, normalisation and
pooling layer and any other module holding parameters. Layer names are the model's
(``conv1``, ``fire2/squeeze1x1``, ``fire2/expand3x3``, ``conv10``: the Caffe prototxt's).
Fire block rows carry s1x1/e1x1/e3x3 as in SqueezeNet Table 1.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Union

import torch
from torch import nn

from ..errors import SqueezelabError
from ..models import resolve_model
from ..models.tracing import BLOCK, OTHER, PE_KINDS, InputSize, LayerSpec, input_hw, trace
from ..tables import format_table
from ..weights import build_model as build_from_weights
from .counting import count_params
from .memory import peak_activation_bytes

#: Trace kinds that get a profile row (besides blocks); activations and functional ops do not.
_ROW_KINDS = (*PE_KINDS, "pool", "norm", OTHER)

MB = 1e6
MIB = 2**20


@dataclass
class LayerProfile:
    """One row of a profile. Shapes exclude the batch dimension; bytes are fp32 at batch 1."""

    name: str
    path: str
    type: str
    is_block: bool
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    macs: int
    activation_bytes: int
    nonzeros: int
    kernel: Optional[tuple[int, int]] = None
    stride: Optional[tuple[int, int]] = None
    groups: Optional[int] = None
    s1x1: Optional[int] = None
    e1x1: Optional[int] = None
    e3x3: Optional[int] = None


@dataclass
class Profile:
    """A model's per-layer rows and totals for one input size (batch 1, fp32 activations)."""

    model_name: str
    input_size: tuple[int, int]
    layers: list[LayerProfile]
    params: int
    macs: int
    peak_activation_bytes: int
    nonzeros: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def size_fp32(self) -> int:
        """Model size in bytes with 32-bit weights (params x 4)."""
        return self.params * 4

    @property
    def size_fp16(self) -> int:
        return self.params * 2

    @property
    def size_int8(self) -> int:
        return self.params

    @property
    def sparse_size(self) -> int:
        """Bytes of the nonzero fp32 weights alone (no index overhead); equals size_fp32 when dense."""
        return self.nonzeros * 4

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzeros / self.params if self.params else 0.0

    def layer_rows(self) -> list[LayerProfile]:
        """The layer rows only (blocks excluded); their params and MACs sum to the totals."""
        return [row for row in self.layers if not row.is_block]

    def top_level(self) -> list[LayerProfile]:
        """One row per paper-level unit: blocks and the layers outside any block (Table 1's rows)."""
        rows, inside = [], ""
        for row in self.layers:
            if inside and row.path.startswith(inside):
                continue
            inside = row.path + "." if row.is_block else ""
            rows.append(row)
        return rows

    def totals(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "macs": self.macs,
            "peak_activation_bytes": self.peak_activation_bytes,
            "size_fp32_bytes": self.size_fp32,
            "size_fp16_bytes": self.size_fp16,
            "size_int8_bytes": self.size_int8,
            "nonzeros": self.nonzeros,
            "sparse_size_bytes": self.sparse_size,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "input_size": list(self.input_size),
            "totals": self.totals(),
            "meta": self.meta,
            "layers": [asdict(row) for row in self.layers],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(_COLUMNS)
        for row in self.layers:
            writer.writerow(_row_cells(row, text=False))
        return buf.getvalue()

    def table(self, markdown: bool = False, blocks_only: bool = False) -> str:
        rows = self.top_level() if blocks_only else self.layers
        return format_table(list(_COLUMNS), [_row_cells(r) for r in rows], markdown=markdown)

    def summary(self) -> str:
        """The totals as aligned text lines."""
        lines = [
            f"model:                 {self.model_name} @ {self.input_size[0]}x{self.input_size[1]}, batch 1",
            f"parameters:            {self.params:,}",
            f"MACs (conv+linear):    {self.macs:,}",
            f"peak activations:      {self.peak_activation_bytes / MIB:.2f} MiB ({self.peak_activation_bytes:,} B, fp32)",
            f"size fp32/fp16/int8:   {self.size_fp32 / MIB:.2f} / {self.size_fp16 / MIB:.2f} / "
            f"{self.size_int8 / MIB:.2f} MiB ({self.size_fp32 / MB:.2f} / {self.size_fp16 / MB:.2f} / "
            f"{self.size_int8 / MB:.2f} MB)",
            f"nonzero weights:       {self.nonzeros:,} ({100 * self.sparsity:.1f}% zeros); "
            f"sparse fp32 size {self.sparse_size / MIB:.2f} MiB",
        ]
        return "\n".join(lines)


_COLUMNS = ("layer", "type", "k/s/g", "input", "output", "params", "MACs", "act bytes", "s1x1", "e1x1", "e3x3")


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def _row_cells(row: LayerProfile, text: bool = True) -> list[Any]:
    ksg = ""
    if row.kernel is not None:
        ksg = f"{row.kernel[0]}x{row.kernel[1]}/{row.stride[0] if row.stride else 1}"
        if row.groups and row.groups > 1:
            ksg += f"/g{row.groups}"
    name = row.name if not text or row.is_block or "/" not in row.name else "  " + row.name
    optional = ["" if v is None else v for v in (row.s1x1, row.e1x1, row.e3x3)]
    return [name, row.type, ksg, _shape(row.input_shape), _shape(row.output_shape), row.params, row.macs,
            row.activation_bytes, *optional]


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _nonzeros(module: nn.Module) -> int:
    """Nonzero parameters; a model on the meta device (no values) counts as dense."""
    return sum(p.numel() if p.is_meta else int(torch.count_nonzero(p.detach())) for p in module.parameters())


def _resolve(model_or_name: Union[str, nn.Module], weights: Optional[str]) -> tuple[nn.Module, str]:
    """The model to profile and its name: the name given, else the ``pretrained_cfg``'s architecture, else
    the module's class."""
    if isinstance(model_or_name, nn.Module):
        if weights is not None:
            raise SqueezelabError("pass either a model object or a name with weights=..., not both")
        cfg = model_or_name.__dict__.get("pretrained_cfg")
        return model_or_name, cfg.architecture if cfg is not None else type(model_or_name).__name__
    if weights is not None:
        model = build_from_weights(weights, architecture=model_or_name)
        if count_params(model) == 0:
            raise SqueezelabError(f"{weights} holds no PyTorch weights (ONNX?); profile a native or PyTorch checkpoint")
        return model, model.pretrained_cfg.architecture
    spec = resolve_model(model_or_name)
    return spec.build(), spec.name


def _row(path: str, module: nn.Module, calls: list[LayerSpec], macs: int) -> LayerProfile:
    """One row from a module's trace records (a module run twice keeps its last shapes)."""
    last = calls[-1]
    row = LayerProfile(
        name=calls[0].name, path=path, type=last.module, is_block=last.kind == BLOCK, input_shape=last.input_shape,
        output_shape=last.output_shape, params=count_params(module), macs=macs,
        activation_bytes=last.elements * last.element_bytes, nonzeros=_nonzeros(module),
    )
    if isinstance(module, (nn.Conv2d, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)):
        row.kernel, row.stride = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)
        row.groups = getattr(module, "groups", None)
    children = dict(module.named_children())
    if row.is_block and {"squeeze", "expand1x1", "expand3x3"} <= set(children):  # a Fire module: Table 1's sizes
        row.s1x1, row.e1x1, row.e3x3 = (children[n].out_channels for n in ("squeeze", "expand1x1", "expand3x3"))
    return row


def profile(
    model_or_name: Union[str, nn.Module], input_size: InputSize = 224, weights: Optional[str] = None, *, peak: bool = True
) -> Profile:
    """Profile a model by name (zoo, baseline or torchvision, with ``NAME:KEY=VALUE`` keywords) or a module.

    Args:
        model_or_name: a name for :func:`squeezelab.models.resolve_model` (``squeezenet1_1``,
            ``1.0-SqNxt-23``, ``mobilenet_v1``, ``resnet18``, ``sqnxt23v5_w1:width=1.5``) or an ``nn.Module``.
        input_size: side length or (H, W) of the one input image.
        weights: a checkpoint or weights file for ``squeezelab.build_model``; the sparse size
            and nonzero counts then describe those weights (e.g. a pruned checkpoint).
        peak: compute the peak activation memory (a second, traced run); ``False`` leaves it 0.
    """
    model, name = _resolve(model_or_name, weights)
    height, width = input_hw(input_size)
    calls: dict[str, list[LayerSpec]] = {}
    for layer in trace(model, (height, width)):
        if layer.module and (layer.kind in _ROW_KINDS or layer.kind == BLOCK):
            calls.setdefault(layer.path, []).append(layer)
    layer_macs = {path: sum(c.macs for c in records) for path, records in calls.items()
                  if records[-1].kind != BLOCK}
    rows: list[LayerProfile] = []
    for path, module in model.named_modules():
        if path not in calls:
            continue
        if calls[path][-1].kind == BLOCK:
            inside = [p for p in layer_macs if p.startswith(path + ".")]
            if not inside:
                continue
            rows.append(_row(path, module, calls[path], sum(layer_macs[p] for p in inside)))
        else:
            rows.append(_row(path, module, calls[path], layer_macs[path]))
    return Profile(
        model_name=name,
        input_size=(height, width),
        layers=rows,
        params=count_params(model),
        macs=sum(layer_macs.values()),
        peak_activation_bytes=peak_activation_bytes(model, (height, width)) if peak else 0,
        nonzeros=_nonzeros(model),
        meta={"weights": weights} if weights else {},
    )

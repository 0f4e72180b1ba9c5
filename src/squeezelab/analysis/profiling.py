"""Per-layer profile of a model: shapes, parameters, MACs, activation bytes, totals.

Counting follows :mod:`squeezelab.analysis.counting` (one MAC per multiply-add of
Conv2d and Linear, batch 1). Rows are the model's modules in definition order:
a *block* row for every module the model names in ``paper_layer_names()``
(``fire2``, ``stage1/block1``) that has sub-layers, with the sums of its
layers, and a *layer* row for every convolution, linear, normalisation and
pooling layer. Layer names follow the paper where one exists (``conv1``,
``fire2/squeeze1x1``, ``fire2/expand3x3``, ``conv10``; Caffe's names inside a
Fire module). Fire block rows carry s1x1/e1x1/e3x3 as in SqueezeNet Table 1.
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
from ..tables import format_table
from ..weights import build_model as build_from_weights
from .baselines import build_model
from .counting import InputSize, _layer_macs, count_params, hw_size
from .memory import peak_activation_bytes

#: Layer types that get their own row (besides any leaf module holding parameters).
_LAYER_TYPES = (
    nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm,
    nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
)
#: Caffe names of the Fire submodules (forresti/SqueezeNet prototxt: fire2/squeeze1x1, ...).
_FIRE_CHILD_NAMES = {"squeeze": "squeeze1x1", "expand1x1": "expand1x1", "expand3x3": "expand3x3"}

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


def _paper_name(path: str, names: dict[str, str], fire_paths: set[str]) -> str:
    """Longest named prefix of ``path`` + the rest; Fire children get Caffe names."""
    if path in names:
        return names[path]
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in names:
            rest = parts[cut:]
            if prefix in fire_paths and rest[0] in _FIRE_CHILD_NAMES:
                rest = [_FIRE_CHILD_NAMES[rest[0]], *rest[1:]]
            return names[prefix] + "/" + "/".join(rest)
    return path


def _is_layer(module: nn.Module) -> bool:
    if any(True for _ in module.children()):
        return False
    return isinstance(module, _LAYER_TYPES) or any(True for _ in module.parameters(recurse=False))


def _nonzeros(module: nn.Module) -> int:
    """Nonzero parameters; a model on the meta device (no values) counts as dense."""
    return sum(p.numel() if p.is_meta else int(torch.count_nonzero(p.detach())) for p in module.parameters())


def _resolve(model_or_name: Union[str, nn.Module], weights: Optional[str]) -> nn.Module:
    if isinstance(model_or_name, nn.Module):
        if weights is not None:
            raise SqueezelabError("pass either a model object or a name with weights=..., not both")
        return model_or_name
    if weights is not None:
        model = build_from_weights(weights, architecture=model_or_name)
        if count_params(model) == 0:
            raise SqueezelabError(f"{weights} holds no PyTorch weights (ONNX?); profile a native or PyTorch checkpoint")
        return model
    return build_model(model_or_name)


def profile(
    model_or_name: Union[str, nn.Module], input_size: InputSize = 224, weights: Optional[str] = None, *, peak: bool = True
) -> Profile:
    """Profile a zoo model, a baseline (``alexnet``, ``vgg19``, ``mobilenet_v1``, ``mobilenet_v2``) or a module.

    Args:
        model_or_name: model name / paper alias, or an ``nn.Module``.
        input_size: side length or (H, W) of the one input image.
        weights: a checkpoint or weights file for ``squeezelab.build_model``; the sparse size
            and nonzero counts then describe those weights (e.g. a pruned checkpoint).
        peak: compute the peak activation memory (a second, traced run); ``False`` leaves it 0.
    """
    model = _resolve(model_or_name, weights)
    height, width = hw_size(input_size)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = torch.zeros(1, int(getattr(model, "in_chans", 3)), height, width, device=device)
    if hasattr(model, "check_input"):
        model.check_input(x)
    names: dict[str, str] = model.paper_layer_names() if hasattr(model, "paper_layer_names") else {}
    modules = dict(model.named_modules())
    fire_paths = {p for p in names if p in modules and {"squeeze", "expand1x1", "expand3x3"} <= set(
        n for n, _ in modules[p].named_children())}
    block_paths = {p for p in names if p in modules and not _is_layer(modules[p]) and any(
        _is_layer(m) for m in modules[p].modules())}
    watched = {p: m for p, m in modules.items() if p and (p in block_paths or _is_layer(m))}

    seen: dict[str, dict[str, Any]] = {}

    def make_hook(path: str):  # noqa: ANN202
        def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
            out = output if isinstance(output, torch.Tensor) else output[0]
            record = seen.setdefault(path, {"macs": 0})
            record["input_shape"] = tuple(inputs[0].shape[1:]) if inputs else ()
            record["output_shape"] = tuple(out.shape[1:])
            record["activation_bytes"] = out.numel() * out.element_size()
            record["macs"] += _layer_macs(module, out)

        return hook

    handles = [m.register_forward_hook(make_hook(p)) for p, m in watched.items()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    except RuntimeError as exc:
        raise SqueezelabError(f"model does not run on a {height}x{width} input: {exc}".splitlines()[0]) from None
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    rows: list[LayerProfile] = []
    for path, module in watched.items():
        if path not in seen:
            continue
        rec = seen[path]
        is_block = path in block_paths
        macs = rec["macs"]
        if is_block:
            macs = sum(seen[p]["macs"] for p in watched if p.startswith(path + ".") and p in seen
                       and p not in block_paths)
        row = LayerProfile(
            name=_paper_name(path, names, fire_paths),
            path=path,
            type=type(module).__name__,
            is_block=is_block,
            input_shape=rec["input_shape"],
            output_shape=rec["output_shape"],
            params=count_params(module),
            macs=macs,
            activation_bytes=rec["activation_bytes"],
            nonzeros=_nonzeros(module),
        )
        if isinstance(module, (nn.Conv2d, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)):
            row.kernel, row.stride = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)
            row.groups = getattr(module, "groups", None)
        if path in fire_paths:
            row.s1x1 = modules[path].squeeze.out_channels
            row.e1x1 = modules[path].expand1x1.out_channels
            row.e3x3 = modules[path].expand3x3.out_channels
        rows.append(row)

    layer_rows = [r for r in rows if not r.is_block]
    return Profile(
        model_name=str(getattr(model, "model_name", type(model).__name__)),
        input_size=(height, width),
        layers=rows,
        params=count_params(model),
        macs=sum(r.macs for r in layer_rows),
        peak_activation_bytes=peak_activation_bytes(model, (height, width)) if peak else 0,
        nonzeros=_nonzeros(model),
        meta={"weights": weights} if weights else {},
    )

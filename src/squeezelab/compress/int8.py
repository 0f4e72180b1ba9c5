"""INT8 post-training static quantization with ONNX Runtime (QDQ format), calibrated on an image folder.

Why ONNX Runtime and not PyTorch PT2E / X86InductorQuantizer (docs/compression.md):
the INT8 model is a single ``.onnx`` file that ``squeezelab eval --weights``
and ``squeezelab bench`` already run through ONNX Runtime, it needs no
``torch.compile`` toolchain at inference time (PT2E's INT8 speed comes from
Inductor code generation, which needs a C++ compiler on the user's machine), and
ORT's QDQ graphs run on ARM and x86 alike. The exported graph first goes through ORT's
``quant_pre_process`` (shape inference and graph optimisation, as ORT recommends).

Weights are int8 per output channel and activations uint8 per tensor (U8S8): ORT's
x86 kernels for signed weights use VNNI's ``vpdpbusd`` and are about twice as fast
as the unsigned-weight (U8U8) path this module used before (docs/inference.md).
CPUs with AVX2 but no VNNI add pairs of u8*s8 products in int16, which can saturate;
there ``reduce_range`` (7-bit weights, ORT's remedy) is on by default. Activation
ranges are the 99.99th percentile of what the calibration images produce (MinMax lets
one outlier coarsen a whole tensor), and the classifier convolution and ``GlobalAveragePool``
stay in fp32 (:data:`FP32_CONVS`) so the logits are not 8-bit numbers.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Collection, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch import fx, nn

from ..cpu import has_vnni
from ..data.sources import folder_images, pil_images
from ..errors import SqueezelabError
from ..export.fold import fold_batchnorm
from ..export.onnx import INPUT_NAME, export_onnx
from ..extras import require
from ..io import PathLike, atomic_path
from ..weights.checkpoint import pretrained_cfg_of
from .ptq import Affine, correct_biases, equalize_activations, match_tensors, round_weights, with_fake_quant

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
#: How a missing or empty calibration folder's error ends.
CALIBRATION_HINT = "calibration needs a few dozen representative images"
#: The activation percentile kept by ``method="percentile"`` (ORT's default, 99.999, clips too little).
PERCENTILE = 99.99
#: Strength of the activation equalisation (:func:`.ptq.equalize_activations`), 0 = off.
EQUALIZE_ALPHA = 0.5
#: Convolutions left in fp32 by default, by position: the last, the classifier (conv10), whose uint8 output
#: would be the logits. On squeezenet1_1.caffe it takes INT8 from 67 to 69 (fp32: 70) of the 100 ImageNet
#: samples and their mean KL to fp32 from 0.023 to 0.009, for 1.8x fp32 speed at batch 1 instead of 2.1x.
#: The first convolution in fp32 too (the usual mixed-precision pair) gave 70 and 0.008 but fp32 speed:
#: ORT leaves its NHWC INT8 path there (docs/compression.md, "INT8 that keeps accuracy").
FP32_CONVS = (-1,)


class _Reader:
    """An ONNX Runtime CalibrationDataReader over preprocessed images, one image per call."""

    def __init__(self, images: torch.Tensor, input_name: str):
        self.images, self.input_name = images, input_name
        self.position = 0

    def get_next(self) -> Optional[dict[str, np.ndarray]]:
        if self.position >= len(self.images):
            return None
        self.position += 1
        return {self.input_name: self.images[self.position - 1:self.position].numpy().astype(np.float32)}

    def rewind(self) -> None:
        self.position = 0


@dataclass
class _QuantizedConv:
    """A QDQ ``Conv`` of the quantized graph: the initializers of its weight, weight scale, bias and bias scale,
    and the scale of its input."""

    weight: str
    weight_scale: str
    bias: Optional[str]
    bias_scale: Optional[str]
    input_scale: float


def _initializers(proto: Any) -> dict[str, Any]:
    return {init.name: init for init in proto.graph.initializer}


def _activation_affines(proto: Any) -> dict[str, Affine]:
    """Tensor name -> its uint8 quantization, for every per-tensor ``QuantizeLinear`` of a QDQ model."""
    numpy_helper = require("onnx.numpy_helper", "INT8 quantization")
    inits = _initializers(proto)
    affines = {}
    for node in proto.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[1] in inits:
            scale = numpy_helper.to_array(inits[node.input[1]])
            if scale.size == 1:
                zero = numpy_helper.to_array(inits[node.input[2]])
                affines[node.input[0]] = Affine(float(scale), int(zero))
    return affines


def _quantized_convs(proto: Any) -> list[_QuantizedConv]:
    """The QDQ ``Conv`` nodes whose weights are int8 initializers behind a ``DequantizeLinear``."""
    numpy_helper = require("onnx.numpy_helper", "INT8 quantization")
    inits = _initializers(proto)
    producer = {out: node for node in proto.graph.node for out in node.output}
    convs = []
    for node in proto.graph.node:
        if node.op_type != "Conv":
            continue
        x, w = producer.get(node.input[0]), producer.get(node.input[1])
        b = producer.get(node.input[2]) if len(node.input) > 2 else None
        if not (x is not None and w is not None and x.op_type == w.op_type == "DequantizeLinear"
                and w.input[0] in inits):
            continue
        input_scale = float(numpy_helper.to_array(inits[x.input[1]]))
        bias_ok = b is not None and b.op_type == "DequantizeLinear" and b.input[0] in inits
        convs.append(_QuantizedConv(w.input[0], w.input[1], b.input[0] if bias_ok else None,
                                    b.input[1] if bias_ok else None, input_scale))
    return convs


def _dequantized(proto: Any, conv: _QuantizedConv) -> torch.Tensor:
    numpy_helper = require("onnx.numpy_helper", "INT8 quantization")
    inits = _initializers(proto)
    codes = numpy_helper.to_array(inits[conv.weight]).astype(np.float64)
    scale = numpy_helper.to_array(inits[conv.weight_scale]).astype(np.float64)
    return torch.from_numpy(codes * scale.reshape(-1, *([1] * (codes.ndim - 1))))


def _match_convs(graph: fx.GraphModule, proto: Any) -> dict[str, _QuantizedConv]:
    """Conv module name -> its QDQ node: the one whose dequantized weights lie within half a step of it."""
    numpy_helper = require("onnx.numpy_helper", "INT8 quantization")
    inits = _initializers(proto)
    matches: dict[str, _QuantizedConv] = {}
    for quantized in _quantized_convs(proto):
        weights = _dequantized(proto, quantized)
        step = torch.from_numpy(numpy_helper.to_array(inits[quantized.weight_scale]).astype(np.float64))
        for name, module in graph.named_modules():
            if (isinstance(module, nn.Conv2d) and name not in matches and module.weight.shape == weights.shape
                    and bool(((module.weight.double() - weights).abs().flatten(1).amax(1) <= 0.501 * step).all())):
                matches[name] = quantized
                break
    return matches


def _fp32_values(path: Path, names: Sequence[str], x: torch.Tensor) -> dict[str, np.ndarray]:
    """The values of the tensors ``names`` of the fp32 ONNX model at ``path`` on input ``x``."""
    onnx = require("onnx", "INT8 quantization")
    ort = require("onnxruntime", "INT8 quantization")
    proto = onnx.load(str(path))
    known = {out for node in proto.graph.node for out in node.output} | {i.name for i in proto.graph.input}
    wanted = [name for name in names if name in known and name not in {o.name for o in proto.graph.output}]
    for name in wanted:
        proto.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = session.run(wanted, {INPUT_NAME: x.numpy()})
    values = dict(zip(wanted, outputs))
    if INPUT_NAME in names:
        values[INPUT_NAME] = x.numpy()
    return values


def _write_convs(proto: Any, graph: fx.GraphModule, matches: dict[str, _QuantizedConv],
                 rounded: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Put the rounded int8 weights, their scales and the (corrected) biases of ``graph`` into the QDQ model."""
    numpy_helper = require("onnx.numpy_helper", "INT8 quantization")
    inits = _initializers(proto)
    modules = dict(graph.named_modules())

    def put(name: str, array: np.ndarray) -> None:
        inits[name].CopyFrom(numpy_helper.from_array(array, name))

    for name, quantized in matches.items():
        codes, scale = rounded[name]
        put(quantized.weight, codes.numpy().astype(np.int8))
        put(quantized.weight_scale, scale.numpy().astype(np.float32))
        bias = modules[name].bias
        if quantized.bias is not None and bias is not None:
            bias_scale = (quantized.input_scale * scale.double()).numpy()
            limit = float(np.iinfo(np.int32).max)
            put(quantized.bias, np.clip(np.round(bias.detach().double().numpy() / bias_scale), -limit, limit).astype(np.int32))
            put(quantized.bias_scale, bias_scale.astype(np.float32))


def _refine(graph: fx.GraphModule, proto: Any, prepared: Path, images: torch.Tensor, rounding: bool,
            bias_correction: bool, kept: Collection[str]) -> None:
    """Output-error rounding and bias correction (:mod:`.ptq`) against ORT's own activation ranges of the
    quantized convolutions (all but ``kept``, left in fp32); the QDQ model ``proto`` gets the new weights and
    biases."""
    matches = _match_convs(graph, proto)
    convs = [name for name, module in graph.named_modules() if isinstance(module, nn.Conv2d) and name not in kept]
    if len(matches) != len(convs):
        raise SqueezelabError(f"INT8: found {len(matches)} of the {len(convs)} convolutions in the quantized graph; "
                              f"quantize with rounding='nearest', bias_correction=False")
    reference = copy.deepcopy(graph)
    if rounding:
        rounded = round_weights(graph, images, matches)
    else:
        numpy_helper = require("onnx.numpy_helper", "INT8 quantization")
        inits = _initializers(proto)
        rounded = {}
        for name, quantized in matches.items():
            codes = torch.from_numpy(numpy_helper.to_array(inits[quantized.weight]).astype(np.int8))
            scale = torch.from_numpy(numpy_helper.to_array(inits[quantized.weight_scale]).astype(np.float32))
            graph.get_submodule(name).weight.data = codes.float() * scale.view(-1, 1, 1, 1)
            rounded[name] = (codes, scale)
    if bias_correction:
        affines = _activation_affines(proto)
        nodes = match_tensors(graph, _fp32_values(prepared, list(affines), images[:2]), images[:2])
        simulated = with_fake_quant(graph, {nodes[t]: a for t, a in affines.items() if t in nodes})
        for name, bias in correct_biases(simulated, reference, images, matches).items():
            graph.get_submodule(name).bias.data = bias
    _write_convs(proto, graph, matches, rounded)


def quantize_int8(model: nn.Module, output: PathLike, calibration: Union[PathLike, Sequence[Image.Image]],
                  max_images: int = 64, method: str = "percentile", per_channel: bool = True,
                  reduce_range: Optional[bool] = None, equalize: float = EQUALIZE_ALPHA, rounding: str = "output-error",
                  bias_correction: bool = True, fp32_convs: Sequence[int] = FP32_CONVS) -> Path:
    """Quantize ``model`` statically to INT8 (ONNX Runtime QDQ, U8S8) and write ``output``.

    The calibration images are preprocessed as ``model.pretrained_cfg`` says (channel order, value
    scale, mean/std, size): a model from :func:`squeezelab.build_model`. ``calibration`` is a folder
    of images (recursive, ``max_images`` evenly spaced) or a list of PIL images. Before and after ORT's
    calibration (:mod:`.ptq`): ``equalize`` (the activation-equalisation strength alpha, 0 = off),
    ``rounding`` (``"output-error"`` or ORT's ``"nearest"``) and ``bias_correction``. ``fp32_convs``: positions
    (in graph order) of the convolutions left in fp32 (:data:`FP32_CONVS`; ``()`` quantizes all). ``reduce_range``
    (7-bit weights) defaults to on where this CPU has no VNNI; pass False for a file meant for VNNI
    machines only. The file keeps the model's pretrained config (architecture, preprocessing,
    classes), so ``squeezelab eval MODEL --weights output`` evaluates it with ONNX Runtime.
    """
    onnx = require("onnx", "INT8 quantization")
    quantization = require("onnxruntime.quantization", "INT8 quantization")
    shape_inference = require("onnxruntime.quantization.shape_inference", "INT8 quantization")

    if method not in CALIBRATION_METHODS:
        raise SqueezelabError(f"unknown calibration method {method!r}; use one of {', '.join(CALIBRATION_METHODS)}")
    if rounding not in ("output-error", "nearest"):
        raise SqueezelabError(f"unknown rounding {rounding!r}; use 'output-error' or 'nearest'")
    cfg = pretrained_cfg_of(model)
    preprocess = cfg.require_preprocess("INT8 calibration")
    images = (pil_images(calibration, "calibration images") if isinstance(calibration, (list, tuple))
              else folder_images(calibration, what="calibration image", purpose=CALIBRATION_HINT))
    tensors = images.subset(max_images).batches(preprocess).tensors()
    if reduce_range is None:
        reduce_range = not has_vnni()
    refine = per_channel and not reduce_range and (rounding == "output-error" or bias_correction)
    graph = fold_batchnorm(model)
    if equalize:
        equalize_activations(graph, tensors, alpha=equalize)
    calib = {"minmax": quantization.CalibrationMethod.MinMax, "entropy": quantization.CalibrationMethod.Entropy,
             "percentile": quantization.CalibrationMethod.Percentile}[method]
    with tempfile.TemporaryDirectory(prefix="squeezelab-int8-") as tmp:
        fp32 = Path(tmp) / "model.fp32.onnx"
        export_onnx(graph, fp32, input_size=tensors.shape[-1], dynamic_batch=True)
        prepared = Path(tmp) / "model.prep.onnx"
        shape_inference.quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        nodes = onnx.load(str(prepared)).graph.node
        pooled = [n.name for n in nodes if n.op_type == "GlobalAveragePool"]
        conv_nodes = [n.name for n in nodes if n.op_type == "Conv"]
        conv_modules = [name for name, module in graph.named_modules() if isinstance(module, nn.Conv2d)]
        kept = [conv_modules[i] for i in fp32_convs]
        excluded = pooled + [conv_nodes[i] for i in fp32_convs]
        int8 = Path(tmp) / "model.int8.onnx"
        quantization.quantize_static(
            str(prepared), str(int8), _Reader(tensors, INPUT_NAME), quant_format=quantization.QuantFormat.QDQ,
            per_channel=per_channel, reduce_range=reduce_range, activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8, nodes_to_exclude=excluded, calibrate_method=calib,
            calibration_providers=["CPUExecutionProvider"], extra_options={"CalibPercentile": PERCENTILE})
        proto = onnx.load(str(int8))
        if refine:
            _refine(graph, proto, prepared, tensors, rounding == "output-error", bias_correction, kept)
    kept_note = f"convolutions {', '.join(map(str, fp32_convs))} in fp32"
    steps = ", ".join(step for step, on in ((kept_note, fp32_convs),
                                             (f"activation equalisation (alpha {equalize:g})", equalize),
                                             ("output-error rounding", refine and rounding == "output-error"),
                                             ("bias correction", refine and bias_correction)) if on) or "none"
    weights = f"{'7-bit' if reduce_range else 's8'} {'per-channel' if per_channel else 'per-tensor'} weights"
    extra = {**cfg.extra, "quantization": f"int8 static QDQ, u8 activations / {weights}, {method} calibration on "
             f"{len(tensors)} images; {steps}"}
    del proto.metadata_props[:]
    for key, value in replace(cfg, extra=extra).to_strings().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    with atomic_path(output) as tmp_out:
        onnx.save(proto, str(tmp_out))
    return Path(output)

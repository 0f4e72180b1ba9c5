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
one outlier coarsen a whole tensor), and ``GlobalAveragePool`` stays in fp32 so
the logits are averages of dequantized values rather than 8-bit numbers.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image
from torch import nn

from ..cpu import has_vnni
from ..data.preprocess import image_files, read_image
from ..errors import SqueezelabError
from ..export.onnx import INPUT_NAME, export_onnx
from ..io import PathLike, atomic_path
from ..weights.checkpoint import CheckpointMeta

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
#: The activation percentile kept by ``method="percentile"`` (ORT's default, 99.999, clips too little).
PERCENTILE = 99.99


def calibration_images(source: PathLike, limit: int = 64) -> list[Path]:
    """Up to ``limit`` image files under ``source`` (recursive, sorted); labels are not needed."""
    root = Path(source)
    if not root.is_dir():
        raise SqueezelabError(f"calibration folder {root} does not exist; pass a folder of representative images")
    files = image_files(root)
    if not files:
        raise SqueezelabError(f"no images in {root}; calibration needs a few dozen representative images")
    step = max(1, len(files) // limit)
    return files[::step][:limit]


class _Reader:
    """An ONNX Runtime CalibrationDataReader over image files or PIL images, one image per call."""

    def __init__(self, images: Sequence[Union[Path, Image.Image]], meta: CheckpointMeta, input_name: str):
        self.images, self.meta, self.input_name = list(images), meta, input_name
        self.position = 0

    def get_next(self) -> Optional[dict[str, np.ndarray]]:
        if self.position >= len(self.images):
            return None
        item = self.images[self.position]
        self.position += 1
        if isinstance(item, Image.Image):
            tensor = self.meta.preprocess(item)
        else:
            tensor = self.meta.preprocess(read_image(item, "calibration image"))
        return {self.input_name: tensor[None].numpy().astype(np.float32)}

    def rewind(self) -> None:
        self.position = 0


def quantize_int8(model: nn.Module, meta: CheckpointMeta, output: PathLike,
                  calibration: Union[PathLike, Sequence[Image.Image]],
                  max_images: int = 64, method: str = "percentile", per_channel: bool = True,
                  reduce_range: Optional[bool] = None) -> Path:
    """Export ``model`` to ONNX, quantize it statically to INT8 (QDQ, U8S8) and write ``output``.

    ``calibration`` is a folder of images (searched recursively, up to ``max_images``) or a
    list of PIL images. ``reduce_range`` (7-bit weights) defaults to on where this CPU has no
    VNNI; pass False for a file meant for VNNI machines only. The file keeps the checkpoint
    metadata (architecture, preprocessing, classes), so ``squeezelab eval MODEL --weights output``
    evaluates it with ONNX Runtime.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise SqueezelabError(f"unknown calibration method {method!r}; use one of {', '.join(CALIBRATION_METHODS)}")
    files = list(calibration)[:max_images] if isinstance(calibration, (list, tuple)) else \
        calibration_images(calibration, max_images)
    calib = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}[method]
    if reduce_range is None:
        reduce_range = not has_vnni()
    with tempfile.TemporaryDirectory(prefix="squeezelab-int8-") as tmp:
        fp32 = Path(tmp) / "model.fp32.onnx"
        export_onnx(model, fp32, input_size=meta.preprocess.crop, dynamic_batch=True, meta=meta)
        prepared = Path(tmp) / "model.prep.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        pooled = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type == "GlobalAveragePool"]
        int8 = Path(tmp) / "model.int8.onnx"
        quantize_static(str(prepared), str(int8), _Reader(files, meta, INPUT_NAME), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, nodes_to_exclude=pooled, calibrate_method=calib,
                        calibration_providers=["CPUExecutionProvider"],
                        extra_options={"CalibPercentile": PERCENTILE})
        proto = onnx.load(str(int8))
    weights = f"{'7-bit' if reduce_range else 's8'} {'per-channel' if per_channel else 'per-tensor'} weights"
    extra = {**meta.extra, "quantization": f"int8 static QDQ, u8 activations / {weights}, "
             f"{method} calibration on {len(files)} images"}
    strings = CheckpointMeta(**{**meta.__dict__, "extra": extra}).to_strings()
    del proto.metadata_props[:]
    for key, value in strings.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    with atomic_path(output) as tmp_out:
        onnx.save(proto, str(tmp_out))
    return Path(output)


def int8_weight_bytes(path: PathLike) -> int:
    """Bytes of the initializers of an ONNX file (int8 weights + scales + fp32 biases)."""
    import onnx

    proto = onnx.load(str(path))
    return sum(len(t.raw_data) or onnx.numpy_helper.to_array(t).nbytes for t in proto.graph.initializer)

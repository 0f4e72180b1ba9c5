"""INT8 post-training static quantization with ONNX Runtime (QDQ format), calibrated on an image folder.

Why ONNX Runtime and not PyTorch PT2E / X86InductorQuantizer (docs/compression.md):
the INT8 model is a single ``.onnx`` file that ``squeezelab eval --weights``
and ``squeezelab bench`` already run through ONNX Runtime, it needs no
``torch.compile`` toolchain at inference time (PT2E's INT8 speed comes from
Inductor code generation, which needs a C++ compiler on the user's machine), and
ORT's QDQ graphs run on ARM and x86 alike. The exported graph first goes through ORT's
``quant_pre_process`` (shape inference and graph optimisation, as ORT recommends). Weights are uint8 per
output channel and activations uint8 per tensor (U8U8), scales from the activation ranges seen
on the calibration images. Not U8S8: on x86 CPUs without VNNI (AVX2 only, like this project's
machines) ORT's U8S8 kernels add pairs of u8*s8 products in int16 and saturate; measured on
squeezenet1_1 (torchvision), U8S8 drops top-1 on the 100 samples from 63% to 55%, U8U8 keeps 63%.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image
from torch import nn

from ..errors import SqueezelabError
from ..inference import IMAGE_EXTENSIONS
from ..io import PathLike, atomic_path
from ..weights.checkpoint import CheckpointMeta

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


def calibration_images(source: PathLike, limit: int = 64) -> list[Path]:
    """Up to ``limit`` image files under ``source`` (recursive, sorted); labels are not needed."""
    root = Path(source)
    if not root.is_dir():
        raise SqueezelabError(f"calibration folder {root} does not exist; pass a folder of representative images")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
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
            try:
                with Image.open(item) as image:
                    tensor = self.meta.preprocess(image)
            except (OSError, ValueError) as exc:
                raise SqueezelabError(f"cannot decode calibration image {item} ({exc}); remove it") from None
        return {self.input_name: tensor[None].numpy().astype(np.float32)}

    def rewind(self) -> None:
        self.position = 0


def quantize_int8(model: nn.Module, meta: CheckpointMeta, output: PathLike,
                  calibration: Union[PathLike, Sequence[Image.Image]],
                  max_images: int = 64, method: str = "minmax", per_channel: bool = True) -> Path:
    """Export ``model`` to ONNX, quantize it statically to INT8 (QDQ) and write ``output``.

    ``calibration`` is a folder of images (searched recursively, up to ``max_images``) or a
    list of PIL images. The file keeps the checkpoint metadata (architecture, preprocessing, classes), so
    ``squeezelab eval MODEL --weights output`` evaluates it with ONNX Runtime.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ..export.onnx import INPUT_NAME, export_onnx

    if method not in CALIBRATION_METHODS:
        raise SqueezelabError(f"unknown calibration method {method!r}; use one of {', '.join(CALIBRATION_METHODS)}")
    files = list(calibration)[:max_images] if isinstance(calibration, (list, tuple)) else \
        calibration_images(calibration, max_images)
    calib = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}[method]
    with tempfile.TemporaryDirectory(prefix="squeezelab-int8-") as tmp:
        fp32 = Path(tmp) / "model.fp32.onnx"
        export_onnx(model, fp32, input_size=meta.preprocess.crop, dynamic_batch=True, meta=meta)
        prepared = Path(tmp) / "model.prep.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        int8 = Path(tmp) / "model.int8.onnx"
        quantize_static(str(prepared), str(int8), _Reader(files, meta, INPUT_NAME), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8,
                        calibrate_method=calib, calibration_providers=["CPUExecutionProvider"])
        proto = onnx.load(str(int8))
    extra = {**meta.extra, "quantization": f"int8 static QDQ, u8 activations / u8 per-channel weights, "
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

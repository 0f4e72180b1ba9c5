"""INT8 static quantization (ONNX Runtime QDQ): a self-describing .onnx that the weights loader runs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from squeezelab.compress.int8 import quantize_int8
from squeezelab.data.preprocess import Preprocess
from squeezelab.errors import SqueezelabError
from squeezelab.models import create_model
from squeezelab.weights.checkpoint import CheckpointMeta
from squeezelab.weights.loader import load_model


def test_int8_model_is_quantized_close_to_fp32_and_loadable(tmp_path):
    torch.manual_seed(0)
    model = create_model("textbook_squeezenet", num_classes=10).eval()
    meta = CheckpointMeta("textbook_squeezenet", 10, preprocess=Preprocess(crop=32, resize=32))
    rng = np.random.default_rng(0)
    photos = [Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)) for _ in range(8)]
    path = quantize_int8(model, meta, tmp_path / "m.int8.onnx", photos)
    proto = onnx.load(str(path))
    ops = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.UINT8 and len(t.dims) == 4]
    assert sum(int(np.prod(t.dims)) for t in int8_weights) >= 0.95 * sum(
        p.numel() for n, p in model.named_parameters() if n.endswith("weight"))
    loaded, loaded_meta = load_model(path, "textbook_squeezenet")
    assert loaded_meta.architecture == "textbook_squeezenet" and "int8" in loaded_meta.extra["quantization"]
    x = torch.stack([meta.preprocess(p) for p in photos])
    with torch.no_grad():
        ref, out = model(x), loaded(x)
    assert torch.linalg.norm(out - ref) / torch.linalg.norm(ref) < 0.1
    with pytest.raises(SqueezelabError):
        quantize_int8(model, meta, tmp_path / "x.onnx", tmp_path / "missing")
    assert not (tmp_path / "x.onnx").exists()

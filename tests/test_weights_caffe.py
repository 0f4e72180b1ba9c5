"""The Caffe model reader against caffemodels this test encodes itself (protobuf wire format, BVLC caffe.proto
field numbers), with layer names taken from the official prototxts, and BatchNorm against hand-computed values."""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from squeezelab.models import create_model
from squeezelab.cli import main
from squeezelab.errors import SqueezelabError
from squeezelab.weights import build_model
from squeezelab.weights.caffe import caffe_layout, load_caffemodel, read_caffemodel

PROTOTXT = Path(__file__).resolve().parent / "data" / "prototxt"
OFFICIAL = {
    "squeezenet1_0": ("squeezenet_v1.0_deploy.prototxt", {"conv10_padding": 1}),
    "squeezenet1_1": ("squeezenet_v1.1_deploy.prototxt", {}),
    "sqnxt23_w1": ("1.0-SqNxt-23.train_val.prototxt", {}),
    "sqnxt23g_w1": ("1.0-G-SqNxt-23.train_val.prototxt", {}),
    "sqnxt23v5_w1": ("1.0-SqNxt-23v5.train_val.prototxt", {}),
    "sqnxt23_w2": ("2.0-SqNxt-23.train_val.prototxt", {}),
    "sqnxt23v5_w2": ("2.0-SqNxt-23v5.train_val.prototxt", {}),
}


# --- a minimal protobuf encoder (the test's own, independent of the reader) ----------------------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def encode_blob(array: np.ndarray, legacy: bool = False, packed: bool = True, double: bool = False) -> bytes:
    """A BlobProto: shape (field 7) or num/channels/height/width (1-4); data (5) or double_data (8)."""
    shape = list(array.shape)
    if legacy:
        head = b"".join(_int_field(n, d) for n, d in zip((1, 2, 3, 4), [1] * (4 - len(shape)) + shape))
    elif packed:
        head = _field(7, _field(1, b"".join(_varint(d) for d in shape)))
    else:
        head = _field(7, b"".join(_int_field(1, d) for d in shape))
    flat = np.ascontiguousarray(array, dtype=np.float64 if double else np.float32).ravel()
    if double:
        return head + _field(8, flat.astype("<f8").tobytes())
    if packed:
        return head + _field(5, flat.astype("<f4").tobytes())
    return head + b"".join(_varint(5 << 3 | 5) + struct.pack("<f", v) for v in flat.tolist())


def encode_layer(name: str, kind: str, blobs: list[bytes], legacy: bool = False) -> bytes:
    """A LayerParameter (net field 100) or, ``legacy``, a V1LayerParameter (net field 2, enum type)."""
    if legacy:
        v1_type = {"Convolution": 4, "InnerProduct": 14, "ReLU": 18, "Pooling": 17, "Data": 5}[kind]
        body = _field(4, name.encode()) + _int_field(5, v1_type) + b"".join(_field(6, b) for b in blobs)
        return _field(2, body)
    body = _field(1, name.encode()) + _field(2, kind.encode()) + b"".join(_field(7, b) for b in blobs)
    return _field(100, body)


def official_layers(prototxt: str) -> list[tuple[str, str]]:
    """(name, type) of the parameter layers of an official prototxt, in order (a regex reading of the file)."""
    text = (PROTOTXT / prototxt).read_text()
    layers = []
    for body in re.findall(r"layers?\s*\{(.*?)\n\}", text, re.S):
        name = re.search(r'name:\s*"([^"]+)"', body).group(1)
        kind = re.search(r'type:\s*"?(\w+)"?', body).group(1)
        if kind in ("Convolution", "BatchNorm", "Scale", "InnerProduct"):
            layers.append((name, kind))
    return layers


def caffe_blobs(model: nn.Module, factor: float = 0.25) -> list[tuple[str, list[np.ndarray]]]:
    """(Caffe type, blobs) per parameter layer in module order; BatchNorm stats stored times ``factor``."""
    out: list[tuple[str, list[np.ndarray]]] = []
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            kind = "Convolution" if isinstance(module, nn.Conv2d) else "InnerProduct"
            out.append((kind, [t.detach().numpy() for t in (module.weight, module.bias) if t is not None]))
        elif isinstance(module, nn.BatchNorm2d):
            out.append(("BatchNorm", [module.running_mean.numpy() * factor, module.running_var.numpy() * factor,
                                      np.array([factor], np.float32)]))
            out.append(("Scale", [module.weight.detach().numpy(), module.bias.detach().numpy()]))
    return out


def encode_model(model: nn.Module, prototxt: str, legacy: bool = False, drop: Optional[str] = None,
                 replace: Optional[dict[str, list[np.ndarray]]] = None, extra: bytes = b"") -> bytes:
    """The model as a caffemodel with the prototxt's layer names, plus a blob-less data and ReLU layer."""
    names = official_layers(prototxt)
    blobs = caffe_blobs(model)
    assert [k for _, k in names] == [k for k, _ in blobs]
    data = encode_layer("data", "Data", [], legacy) + encode_layer("relu_x", "ReLU", [], legacy)
    for (name, kind), (_, arrays) in zip(names, blobs):
        if name == drop:
            continue
        arrays = (replace or {}).get(name, arrays)
        data += encode_layer(name, kind, [encode_blob(a, legacy=legacy) for a in arrays], legacy)
    return _field(1, b"net") + data + extra


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in (*model.parameters(), *(b for n, b in model.named_buffers() if "running" in n)):
            values = torch.rand(tensor.shape, generator=generator) * 0.4 + 0.8 if tensor.ndim == 1 else \
                torch.randn(tensor.shape, generator=generator) * 0.1
            tensor.copy_(values)
    return model.eval()


@pytest.fixture(scope="module")
def v1_1() -> nn.Module:
    return build_model("squeezenet1_1.caffe").eval()  # the bundled OpenVINO copy of the DeepScale caffemodel


@pytest.fixture(scope="module")
def v1_1_file(tmp_path_factory, v1_1) -> Path:
    path = tmp_path_factory.mktemp("caffe") / "squeezenet_v1.1.caffemodel"
    path.write_bytes(encode_model(v1_1, OFFICIAL["squeezenet1_1"][0]))
    return path


# --- tests --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("architecture", sorted(OFFICIAL))
def test_layer_names_are_the_official_prototxt_names(architecture: str) -> None:
    prototxt, kwargs = OFFICIAL[architecture]
    assert [(s.name, s.type) for s in caffe_layout(architecture, **kwargs)] == official_layers(prototxt)


def test_real_v1_1_weights_round_trip_through_cli(tmp_path, v1_1, v1_1_file, capsys) -> None:
    out = tmp_path / "v11.safetensors"
    assert main(["convert", "--from", "caffe", str(v1_1_file), "-o", str(out)]) == 0
    assert "squeezenet1_1" in capsys.readouterr().out
    model = build_model(out)
    meta = model.pretrained_cfg
    assert meta.architecture == "squeezenet1_1" and meta.extra["source_format"] == "caffe"
    pre = meta.preprocess
    assert pre.channel_order == "BGR" and pre.mean == (104.0, 117.0, 123.0) and pre.std == (1.0, 1.0, 1.0)
    for key, value in v1_1.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    from skimage import data as skdata

    x = pre(Image.fromarray(skdata.chelsea()))[None]
    with torch.no_grad():
        expected, got = v1_1(x), model(x)
    assert torch.equal(expected, got)
    assert int(got.argmax()) == int(expected.argmax())
    assert meta.categories[int(got.argmax())].split(",")[0] in {"tabby", "tiger cat", "Egyptian cat"}


def test_caffemodel_suffix_and_prototxt_option(tmp_path, v1_1, v1_1_file) -> None:
    out = tmp_path / "v11.safetensors"
    prototxt = PROTOTXT / OFFICIAL["squeezenet1_1"][0]
    assert main(["convert", str(v1_1_file), "--prototxt", str(prototxt), "-o", str(out)]) == 0
    model = build_model(out)
    meta = model.pretrained_cfg
    assert meta.architecture == "squeezenet1_1"
    assert torch.equal(model.classifier[1].weight, v1_1.classifier[1].weight)


@pytest.mark.parametrize("architecture", ["sqnxt23_w1", "sqnxt23g_w1", "sqnxt23v5_w1"])
def test_squeezenext_random_weights_round_trip(tmp_path, architecture: str) -> None:
    prototxt, kwargs = OFFICIAL[architecture]
    model = randomize(create_model(architecture, **kwargs))
    path = tmp_path / "sqnxt.caffemodel"
    path.write_bytes(encode_model(model, prototxt))
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
    for weights in (load_caffemodel(path), load_caffemodel(path, prototxt=PROTOTXT / prototxt)):
        assert weights.architecture == architecture
        loaded = create_model(architecture, **weights.model_kwargs)
        loaded.load_state_dict(weights.state_dict, strict=True)
        with torch.no_grad():
            assert torch.equal(loaded.eval()(x), expected)


def test_legacy_layers_field_round_trips(tmp_path, v1_1) -> None:
    path = tmp_path / "legacy.caffemodel"
    path.write_bytes(encode_model(v1_1, OFFICIAL["squeezenet1_1"][0], legacy=True))
    layers = read_caffemodel(path)
    assert layers[2].name == "conv1" and layers[2].type == "Convolution" and layers[2].blobs[1].shape == (1, 1, 1, 64)
    weights = load_caffemodel(path)
    assert weights.architecture == "squeezenet1_1"
    for key, value in v1_1.state_dict().items():
        assert torch.equal(weights.state_dict[key], value), key


def test_unpacked_and_double_blobs_decode(tmp_path) -> None:
    array = np.array([[1.5, -2.0], [0.25, 3.0]], np.float32)
    path = tmp_path / "blobs.caffemodel"
    blobs = [encode_blob(array, packed=False), encode_blob(array, double=True), encode_blob(array, legacy=True)]
    path.write_bytes(encode_layer("a", "Convolution", blobs))
    blobs = read_caffemodel(path)[0].blobs
    assert [b.shape for b in blobs] == [(2, 2), (2, 2), (1, 1, 2, 2)]
    for blob in blobs:
        assert blob.data.tolist() == [1.5, -2.0, 0.25, 3.0]


def test_batchnorm_scale_with_hand_computed_values(tmp_path) -> None:
    model = randomize(create_model("sqnxt23_w1"))
    c = model.features.stem.bn.num_features
    # Caffe BatchNorm blobs: sum-weighted mean [2, 4], variance [8, 18], moving-average factor 2 ->
    # mean [1, 2], variance [4, 9]; Scale: gamma [3, 0.5], beta [1, -1].
    replace = {
        "BatchNorm1": [np.tile([2.0, 4.0], c // 2), np.tile([8.0, 18.0], c // 2), np.array([2.0])],
        "Scale1": [np.tile([3.0, 0.5], c // 2), np.tile([1.0, -1.0], c // 2)],
        "BatchNorm2": [np.full(32, 5.0), np.full(32, 7.0), np.array([0.0])],  # factor 0: statistics are 0
    }
    path = tmp_path / "bn.caffemodel"
    path.write_bytes(encode_model(model, OFFICIAL["sqnxt23_w1"][0], replace=replace))
    state = load_caffemodel(path).state_dict
    assert state["features.stem.bn.running_mean"][:2].tolist() == [1.0, 2.0]
    assert state["features.stem.bn.running_var"][:2].tolist() == [4.0, 9.0]
    assert state["features.stage1.0.shortcut.bn.running_mean"].abs().sum() == 0
    assert state["features.stage1.0.shortcut.bn.running_var"].abs().sum() == 0
    loaded = create_model("sqnxt23_w1")
    loaded.load_state_dict(state, strict=True)
    x = torch.full((1, c, 1, 1), 5.0)
    with torch.no_grad():
        y = loaded.eval().features.stem.bn(x).flatten()[:2]
    # By hand: 3 * (5 - 1) / sqrt(4) + 1 = 7 and 0.5 * (5 - 2) / sqrt(9) - 1 = -0.5 (eps 1e-5 moves them < 1e-5).
    assert y.tolist() == pytest.approx([7.0, -0.5], abs=1e-5)


def _one_line_error(path: Path, match: str, prototxt: Optional[Path] = None) -> str:
    with pytest.raises(SqueezelabError, match=match) as info:
        load_caffemodel(path, prototxt=prototxt)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_missing_extra_and_misshapen_layers_are_named(tmp_path, v1_1) -> None:
    prototxt = OFFICIAL["squeezenet1_1"][0]
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(encode_model(v1_1, prototxt, drop="fire9/expand3x3"))
    _one_line_error(bad, "layer fire9/expand3x3 .*missing")
    extra = encode_layer("conv11", "Convolution", [encode_blob(np.zeros((4, 3, 1, 1), np.float32))])
    bad.write_bytes(encode_model(v1_1, prototxt, extra=extra))
    _one_line_error(bad, "layer conv11 .*not part of squeezenet1_1")
    wrong = v1_1.features[4].expand1x1.weight.detach().numpy().reshape(64, 16, 1, 1)[:32]
    bad.write_bytes(encode_model(v1_1, prototxt, replace={"fire3/expand1x1": [wrong, np.zeros(64, np.float32)]}))
    _one_line_error(bad, r"layer fire3/expand1x1 blob 0 has shape \[32, 16, 1, 1\]; squeezenet1_1 expects "
                         r"\[64, 16, 1, 1\]")
    _one_line_error(bad, "layer fire3/expand1x1", prototxt=PROTOTXT / prototxt)


def test_truncated_and_garbage_files(tmp_path, v1_1_file) -> None:
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(v1_1_file.read_bytes()[:1_000_001])
    _one_line_error(bad, "truncated or corrupt")
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _one_line_error(bad, "caffemodel")
    bad.write_bytes(b"")
    _one_line_error(bad, "holds no Caffe layers")


def test_cli_caffe_errors_are_one_line(tmp_path, v1_1_file, capsys) -> None:
    out = tmp_path / "o.safetensors"
    assert main(["convert", "--from", "caffe", str(v1_1_file), "--prototxt",
                 str(PROTOTXT / OFFICIAL["sqnxt23_w1"][0]), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "does not fit sqnxt23_w1: layer Convolution1 (Convolution) is missing" in err
    ten_classes = tmp_path / "ten.prototxt"
    ten_classes.write_text((PROTOTXT / OFFICIAL["squeezenet1_1"][0]).read_text().replace("num_output: 1000",
                                                                                        "num_output: 10"))
    bypass = PROTOTXT / "squeezenet_v1.0_simple_bypass.trainval.prototxt"
    for prototxt, match in ((ten_classes, "describes none of"), (bypass, "bypass")):
        assert main(["convert", "--from", "caffe", str(v1_1_file), "--prototxt", str(prototxt), "-o", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and match in err and not out.exists()
    assert main(["convert", "--from", "ncnn", str(v1_1_file), "--prototxt", "x.prototxt", "-o", str(out)]) == 2
    assert "--from caffe" in capsys.readouterr().err


def _protobuf_net_class() -> type:
    """NetParameter and the messages it needs, with BVLC caffe.proto's field numbers, built by the protobuf package."""
    pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="caffe_subset.proto", package="caffe", syntax="proto2")
    messages = {
        "BlobShape": [("dim", 1, f.TYPE_INT64, True, "")],
        "BlobProto": [("shape", 7, f.TYPE_MESSAGE, False, "BlobShape"), ("data", 5, f.TYPE_FLOAT, True, ""),
                      ("double_data", 8, f.TYPE_DOUBLE, True, ""), ("num", 1, f.TYPE_INT32, False, ""),
                      ("channels", 2, f.TYPE_INT32, False, ""), ("height", 3, f.TYPE_INT32, False, ""),
                      ("width", 4, f.TYPE_INT32, False, "")],
        "LayerParameter": [("name", 1, f.TYPE_STRING, False, ""), ("type", 2, f.TYPE_STRING, False, ""),
                           ("blobs", 7, f.TYPE_MESSAGE, True, "BlobProto")],
        "V1LayerParameter": [("name", 4, f.TYPE_STRING, False, ""), ("type", 5, f.TYPE_INT32, False, ""),
                             ("blobs", 6, f.TYPE_MESSAGE, True, "BlobProto")],
        "NetParameter": [("name", 1, f.TYPE_STRING, False, ""), ("layer", 100, f.TYPE_MESSAGE, True, "LayerParameter"),
                         ("layers", 2, f.TYPE_MESSAGE, True, "V1LayerParameter")],
    }
    for name, fields in messages.items():
        message = proto.message_type.add(name=name)
        for field_name, number, kind, repeated, type_name in fields:
            field = message.field.add(name=field_name, number=number, type=kind,
                                      label=f.LABEL_REPEATED if repeated else f.LABEL_OPTIONAL)
            if type_name:
                field.type_name = f".caffe.{type_name}"
            elif repeated:
                field.options.packed = True
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe.NetParameter"))


@pytest.mark.parametrize("legacy", [False, True])
def test_files_written_by_the_protobuf_package_decode(tmp_path, legacy: bool) -> None:
    """An independent encoder: the protobuf package serializing SqueezeNet v1.0 (random weights, conv10 pad 1)."""
    net_class = _protobuf_net_class()
    model = randomize(create_model("squeezenet1_0", conv10_padding=1))
    net = net_class(name="SqueezeNet_v1.0")
    for (name, kind), (_, arrays) in zip(official_layers(OFFICIAL["squeezenet1_0"][0]), caffe_blobs(model)):
        layer = net.layers.add(name=name, type=4) if legacy else net.layer.add(name=name, type=kind)
        for array in arrays:
            blob = layer.blobs.add()
            if legacy:
                blob.num, blob.channels, blob.height, blob.width = [1] * (4 - array.ndim) + list(array.shape)
            else:
                blob.shape.dim.extend(array.shape)
            blob.data.extend(array.ravel().tolist())
    path = tmp_path / "v10.caffemodel"
    path.write_bytes(net.SerializeToString())
    weights = load_caffemodel(path)
    assert (weights.architecture, weights.model_kwargs) == ("squeezenet1_0", {"conv10_padding": 1})
    for key, value in model.state_dict().items():
        assert torch.equal(weights.state_dict[key], value), key

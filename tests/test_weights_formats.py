"""The three real weight decoders (on the bundled upstream files) against the byte accounting and spot values
of the shared data README §2-4 (docs/weights.md)."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from squeezelab.errors import SqueezelabError
from squeezelab.weights import detect_format, read_deep_compression, read_ncnn, read_openvino
from squeezelab.data.imagenet import imagenet_categories, imagenet_wnids
from squeezelab.weights.registry import BUNDLED_DIR

WEIGHTS = BUNDLED_DIR
DC = WEIGHTS / "squeezenet_v1.0_deep_compression" / "compressed_SqueezeNet.net"
OV_XML = WEIGHTS / "squeezenet_v1.1_caffe_openvino_fp16" / "squeezenet1.1.xml"
NCNN_PARAM = WEIGHTS / "squeezenet_v1.1_torchvision_ncnn_fp16" / "squeezenet_v1.1.ncnn.param"


def _numel(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def deep_compression():
    return read_deep_compression(DC)


def test_deep_compression_byte_accounting(deep_compression):
    state, stats = deep_compression
    assert stats.bytes_read == stats.file_size == 675_763
    assert stats.values == 1_248_424 == _numel(torchvision.models.squeezenet1_0())
    assert stats.nonzeros == 415_921
    assert stats.stored_entries[:4] == [13902, 1528, 1020, 3073]
    assert stats.stored_entries[-1] == 105_973
    # README §2 table: byte offset of conv1 and of each fire's squeeze layer, and of conv10.
    offsets = dict(zip(stats.layers, stats.byte_offsets))
    expected = {"features.0": 104, "features.3.squeeze": 22365, "features.4.squeeze": 34445,
                "features.5.squeeze": 47307, "features.7.squeeze": 82198, "features.8.squeeze": 123278,
                "features.9.squeeze": 194560, "features.10.squeeze": 268212, "features.12.squeeze": 389834,
                "classifier.1": 511779}
    assert {k: offsets[k] for k in expected} == expected
    # conv10 stores 3,650 zero-valued filler entries for runs of more than 15 zeros.
    assert int(torch.count_nonzero(state["classifier.1.weight"])) == 105_973 - 3_650


def test_deep_compression_spot_values(deep_compression):
    state, _ = deep_compression
    w1 = state["features.0.weight"]
    assert w1.shape == (96, 3, 7, 7)
    np.testing.assert_allclose(w1[0, 0, 0, :4], [0.14152136, 0.09867926, 0.05103114, -3.7558e-05],
                               rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(state["features.0.bias"][:3], [0.4963481, -0.17648058, -0.4330942], rtol=1e-6)
    assert float(w1.abs().sum()) == pytest.approx(954.9666, abs=1e-3)
    assert float(state["classifier.1.weight"].sum()) == pytest.approx(-1765.9888, abs=1e-2)
    total = sum(float(v.abs().sum()) for k, v in state.items() if k.endswith("weight"))
    assert total == pytest.approx(28052.73, abs=1e-2)


def test_openvino_byte_accounting_and_spot_values():
    state, stats = read_openvino(OV_XML)
    assert stats.bytes_read == stats.file_size == 2_470_992
    assert stats.values == 1_235_496 == _numel(torchvision.models.squeezenet1_1())
    # Blobs lie back to back: each layer's weights start where the previous layer's fp16 values end.
    sizes = [2 * (state[f"{n}.weight"].numel() + state[f"{n}.bias"].numel()) for n in stats.layers]
    assert stats.byte_offsets == [sum(sizes[:i]) for i in range(len(sizes))]
    np.testing.assert_allclose(state["features.0.weight"][0, 0, 0, :3], [0.25732422, 0.359375, 0.20336914], rtol=1e-6)
    np.testing.assert_allclose(state["features.0.bias"][:3], [-0.01437378, 0.16088867, -0.01655579], rtol=1e-6)
    assert float(state["classifier.1.weight"].sum()) == pytest.approx(3445.84, abs=1e-2)
    tv_shapes = {k: v.shape for k, v in torchvision.models.squeezenet1_1().state_dict().items()}
    assert {k: v.shape for k, v in state.items()} == tv_shapes


def test_ncnn_byte_accounting_and_spot_values():
    state, stats = read_ncnn(NCNN_PARAM)
    assert stats.bytes_read == stats.file_size == 26 * 4 + 1_231_552 * 2 + 3_944 * 4 == 2_478_984
    assert stats.values == 1_235_496
    np.testing.assert_allclose(state["features.0.weight"][0, 0, 0, :3], [0.12091064, 0.17797852, -0.01596069],
                               rtol=1e-6)
    np.testing.assert_allclose(state["features.0.bias"][:3], [0.7685886, 0.04954012, -0.01590956], rtol=1e-6)
    assert float(state["classifier.1.weight"].sum()) == pytest.approx(2783.727, abs=1e-2)


def test_openvino_reproduces_upstream_recorded_car_outputs(upstream_photos: Path):
    """README §3: upstream ran car.png through OpenVINO (cv2 blobFromImage 227, BGR, no mean)."""
    from squeezelab.models import create_model

    model = create_model("squeezenet1_1").eval()
    model.load_state_dict(read_openvino(OV_XML)[0])
    rgb = np.asarray(Image.open(upstream_photos / "car.png").convert("RGB"), dtype=np.float32)
    x = torch.from_numpy(rgb[:, :, ::-1].copy()).permute(2, 0, 1)[None]
    x = torch.nn.functional.interpolate(x, size=(227, 227), mode="bilinear", align_corners=False, antialias=False)
    with torch.no_grad():
        probs, idx = torch.softmax(model(x), 1).topk(5)
    assert idx[0].tolist() == [817, 511, 479, 751, 436]
    np.testing.assert_allclose(probs[0].numpy(), [0.8364, 0.0946, 0.0419, 0.0091, 0.0068], atol=0.01)


def test_detect_format_by_content(tmp_path):
    assert detect_format(DC)[0] == "deep-compression"
    assert detect_format(OV_XML.with_suffix(".bin")) == ("openvino", OV_XML)
    assert detect_format(NCNN_PARAM.with_suffix(".bin")) == ("ncnn", NCNN_PARAM)
    renamed = tmp_path / "weights.dat"
    renamed.write_bytes(DC.read_bytes())
    assert detect_format(renamed)[0] == "deep-compression"


@pytest.mark.parametrize("make", ["truncated_net", "png", "text", "empty", "ncnn_truncated", "xml_without_bin"])
def test_bad_weight_files_give_one_line_errors(tmp_path, make):
    from squeezelab.weights import load_weights

    if make == "truncated_net":
        bad = tmp_path / "compressed_SqueezeNet.net"
        bad.write_bytes(DC.read_bytes()[:600_000])
        match = "truncated"
    elif make == "png":
        from skimage import data as skdata

        bad = tmp_path / "weights.bin"
        Image.fromarray(skdata.coffee()).save(bad, format="PNG")
        match = "not a supported weights file"
    elif make == "text":
        bad = tmp_path / "model.safetensors"
        bad.write_text("hello, not weights\n")
        match = "not a supported weights file"
    elif make == "empty":
        bad = tmp_path / "model.onnx"
        bad.write_bytes(b"")
        match = "not a supported weights file"
    elif make == "ncnn_truncated":
        (tmp_path / "m.param").write_bytes(NCNN_PARAM.read_bytes())
        (tmp_path / "m.bin").write_bytes(NCNN_PARAM.with_suffix(".bin").read_bytes()[:-100])
        bad = tmp_path / "m.param"
        match = "truncated"
    else:
        bad = tmp_path / "squeezenet1.1.xml"
        bad.write_bytes(OV_XML.read_bytes())
        match = "needs its weights file"
    with pytest.raises(SqueezelabError, match=match) as info:
        load_weights(bad)
    assert "\n" not in str(info.value)


def test_imagenet_classes_shipped_in_package():
    wnids, names = imagenet_wnids(), imagenet_categories()
    assert len(wnids) == len(names) == 1000 and wnids == sorted(wnids)
    # Byte-identical to upstream synset_words.txt (zchrissirhcz/squeezenet-ncnn-pnnx-opencv-cpp @ 0392c1c4;
    # sha256 from the shared data README §1), whose line order is the sorted wnids.
    text = resources.files("squeezelab.data").joinpath("imagenet_synset_words.txt").read_bytes()
    assert hashlib.sha256(text).hexdigest() == "ae3fba5fcc74d2c0b6db492b24c55c211358613c02bebc7a3ceab574a153231f"
    # torchvision's own class names agree, but for the two it disambiguates.
    tv = torchvision.models.SqueezeNet1_1_Weights.IMAGENET1K_V1.meta["categories"]
    assert {(i, a, b) for i, (a, b) in enumerate(zip(tv, names)) if a != b} == {
        (134, "crane bird", "crane"), (639, "maillot tank suit", "maillot")}
    assert (names[281], names[285], names[967], names[665], names[670]) == (
        "tabby", "Egyptian cat", "espresso", "moped", "motor scooter")

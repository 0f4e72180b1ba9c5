"""Preprocessing against independent references: OpenCV's resize for the Caffe weights, torchvision's own
transforms for the torchvision weights, and checkpoints written before interpolation/antialias existed.

OpenCV (``opencv-python-headless``, a test dependency) is the reference for the Caffe-trained weights:
Caffe's data layer resized with ``cv2.resize(..., interpolation=cv2.INTER_LINEAR)``, which does not
antialias. 100 labelled images cannot resolve the 1-2 point accuracy change this makes; pixels can.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from squeezelab.data.preprocess import CAFFE, CAFFE_SQUASH_227, TORCHVISION, Preprocess
from squeezelab.models import get_model_entry, list_models
from squeezelab.weights.checkpoint import CheckpointMeta
from squeezelab.data.imagenet import imagenet_categories
from squeezelab.weights.registry import WEIGHTS

cv2 = pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")

PHOTOS = ("chelsea", "coffee", "astronaut")  # 300x451, 400x600, 512x512 RGB


def _photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(skdata, name)())


def _opencv(image: Image.Image, size: tuple[int, int], flag: int) -> np.ndarray:
    """OpenCV's resize to (width, height) as (C, H, W) uint8."""
    return cv2.resize(np.asarray(image), size, interpolation=flag).transpose(2, 0, 1)


def _max_diff(ours: torch.Tensor, reference: np.ndarray) -> int:
    assert tuple(ours.shape) == reference.shape
    return int(np.abs(ours.numpy().astype(np.int16) - reference.astype(np.int16)).max())


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("resize,mode", [(256, "squash"), (227, "squash"), (150, "short_side"), (97, "squash")])
def test_caffe_downscale_matches_opencv_inter_linear(name: str, resize: int, mode: str) -> None:
    image = _photo(name)
    pre = Preprocess(crop=min(resize, 97), resize=resize, resize_mode=mode, antialias=False)
    ours = pre.resize_pixels(image)
    reference = _opencv(image, pre.resized_size(*image.size), cv2.INTER_LINEAR)
    assert _max_diff(ours, reference) <= 1
    # The antialiased (PIL) resize is far from OpenCV's: the test can tell the two apart.
    assert _max_diff(Preprocess(**{**pre.__dict__, "antialias": True}).resize_pixels(image), reference) > 20


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("box,resize", [((100, 80, 164, 128), 256), ((50, 60, 83, 71), 227), ((0, 0, 29, 41), 97)])
def test_caffe_upscale_matches_opencv_inter_linear(name: str, box: tuple[int, int, int, int], resize: int) -> None:
    image = _photo(name).crop(box)  # a small patch, so the resize enlarges it (CIFAR-sized inputs)
    pre = Preprocess(crop=resize, resize=resize, resize_mode="squash", antialias=False)
    assert _max_diff(pre.resize_pixels(image), _opencv(image, (resize, resize), cv2.INTER_LINEAR)) <= 1


@pytest.mark.parametrize("name", PHOTOS)
def test_bicubic_without_antialias_matches_opencv_inter_cubic(name: str) -> None:
    image = _photo(name)
    for size in ((227, 227), (700, 530)):
        pre = Preprocess(crop=200, resize=size[0], resize_mode="squash", interpolation="bicubic", antialias=False)
        reference = cv2.resize(np.asarray(image), (size[0], size[0]), interpolation=cv2.INTER_CUBIC)
        assert _max_diff(pre.resize_pixels(image), reference.transpose(2, 0, 1)) <= 1


@pytest.mark.parametrize("entry", ["squeezenet1_0.deep_compression", "squeezenet1_1.caffe"])
@pytest.mark.parametrize("name", PHOTOS)
def test_caffe_entries_match_a_caffe_style_opencv_pipeline(entry: str, name: str) -> None:
    """BGR, cv2 INTER_LINEAR squash, centre crop, minus the BGR mean: Caffe's test-time recipe, in OpenCV."""
    pre = WEIGHTS[entry].preprocess
    image = _photo(name)
    bgr = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR)
    resized = cv2.resize(bgr, (pre.resize, pre.resize), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    offset = (pre.resize - pre.crop) // 2  # Caffe's data_transformer.cpp centre crop
    crop = resized[offset:offset + pre.crop, offset:offset + pre.crop] - np.asarray([104.0, 117.0, 123.0])
    ours = pre(image)
    assert ours.shape == (3, pre.crop, pre.crop)
    assert float((ours - torch.from_numpy(crop.transpose(2, 0, 1))).abs().max()) <= 1.0 + 1e-4


@pytest.mark.parametrize("name", PHOTOS)
def test_torchvision_entry_matches_torchvision_transforms(name: str) -> None:
    from torchvision.models import SqueezeNet1_1_Weights

    reference = SqueezeNet1_1_Weights.IMAGENET1K_V1.transforms()  # PIL bilinear + antialias, 256, crop 224
    image = _photo(name)
    ours = WEIGHTS["squeezenet1_1.torchvision"].preprocess(image)
    assert torch.allclose(ours, reference(image), atol=1e-5)
    # On a tensor input torchvision also antialiases; that path rounds differently by at most a grey level.
    tensor_input = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
    assert float((ours - reference(tensor_input)).abs().max()) <= 1.0 / 255 / 0.224 + 1e-5


def test_registry_entries_carry_the_full_pretrained_config() -> None:
    for name in ("squeezenet1_0.deep_compression", "squeezenet1_1.caffe"):
        pre = WEIGHTS[name].preprocess
        assert (pre.interpolation, pre.antialias, pre.channel_order, pre.scale) == ("bilinear", False, "BGR", 1.0)
        assert pre.mean == (104.0, 117.0, 123.0) and pre.std == (1.0, 1.0, 1.0) and pre.crop == 227
    assert WEIGHTS["squeezenet1_0.deep_compression"].preprocess == CAFFE
    assert WEIGHTS["squeezenet1_1.caffe"].preprocess == CAFFE_SQUASH_227
    tv = WEIGHTS["squeezenet1_1.torchvision"].preprocess
    assert tv == TORCHVISION and tv.antialias and tv.resize_mode == "short_side" and tv.channel_order == "RGB"
    for entry in WEIGHTS.values():
        if entry.dataset == "cifar10":  # squeezelab's own checkpoints: tests/test_trained_weights.py
            continue
        assert entry.dataset == "imagenet"
        assert list(entry.categories) == imagenet_categories() and len(entry.categories) == 1000
        assert {"samples100_top1", "samples100_top5"} <= set(entry.metrics)


def test_architectures_carry_no_preprocessing() -> None:
    """Preprocessing lives in the weights entries and checkpoints only; an architecture keeps its input size."""
    for name in list_models():
        assert set(get_model_entry(name).default_cfg) <= {"input_size"}, name


#: What ``Preprocess.to_json`` wrote before ``interpolation`` and ``antialias`` existed (Caffe recipe).
_OLD_JSON = json.dumps({"crop": 227, "resize": 256, "resize_mode": "squash", "channel_order": "BGR", "scale": 1.0,
                        "mean": [104.0, 117.0, 123.0], "std": [1.0, 1.0, 1.0], "grayscale": False})


def test_old_checkpoint_metadata_loads_with_the_old_antialiased_resize() -> None:
    from torchvision.transforms import functional as TF

    meta = CheckpointMeta.from_strings({"format": "squeezelab-checkpoint/1", "architecture": "squeezenet1_0",
                                        "num_classes": "1000", "preprocess": _OLD_JSON})
    pre = meta.preprocess
    assert (pre.interpolation, pre.antialias) == ("bilinear", True)
    assert pre == Preprocess(**{**CAFFE.__dict__, "antialias": True})
    # ... and it behaves as the code of that time did: torchvision's PIL resize, centre crop, BGR, minus mean.
    image = _photo("coffee")
    old = TF.center_crop(TF.resize(image, [256, 256], antialias=True), [227, 227])
    bgr = np.asarray(old, dtype=np.float32)[:, :, ::-1] - np.asarray([104.0, 117.0, 123.0], dtype=np.float32)
    assert torch.equal(pre(image), torch.from_numpy(bgr.transpose(2, 0, 1).copy()))


def test_new_fields_round_trip_through_checkpoint_metadata() -> None:
    for pre in (CAFFE, CAFFE_SQUASH_227, TORCHVISION, Preprocess(crop=32, resize=40, interpolation="bicubic")):
        meta = CheckpointMeta("squeezenet1_1", 1000, preprocess=pre)
        assert CheckpointMeta.from_strings(meta.to_strings()).preprocess == pre


def test_unknown_interpolation_is_rejected() -> None:
    with pytest.raises(ValueError, match="interpolation"):
        Preprocess(interpolation="lanczos")  # type: ignore[arg-type]


def test_fine_tuning_data_uses_the_pretrained_weights_preprocessing() -> None:
    from dataclasses import replace

    from squeezelab.data.datasets import build_datasets

    same_size = build_datasets("digits", 227, in_chans=3, augment=False, val_limit=4, pretrained=CAFFE)
    assert same_size.preprocess == CAFFE
    small = build_datasets("digits", 16, in_chans=3, augment=False, val_limit=4, pretrained=CAFFE)
    assert small.preprocess == replace(CAFFE, crop=16, resize=16)
    image = small.val.read(0).convert("RGB")
    assert torch.equal(small.val[0][0], small.preprocess(image))
    grey = build_datasets("digits", 16, augment=False, val_limit=4, pretrained=CAFFE)  # 1 channel: the data's stats
    assert grey.preprocess.grayscale and grey.preprocess.channel_order == "RGB" and grey.preprocess.antialias


def test_caffe_v1_1_entry_reproduces_upstream_opencv_outputs(upstream_photos) -> None:
    """shared/data README §3: the OpenVINO upstream fed car.png through cv2 ``blobFromImage`` (INTER_LINEAR to
    227x227, BGR, no mean) and recorded its top-5. The entry's preprocessing, with that run's zero mean,
    reproduces them; the antialiased resize does not (another 5th class, top-1 0.91)."""
    from dataclasses import replace

    from squeezelab.weights.loader import build_model

    model = build_model("squeezenet1_1.caffe")
    meta = model.pretrained_cfg
    image = Image.open(upstream_photos / "car.png").convert("RGB")  # cv2.imread drops the alpha channel too
    recorded = [0.8364, 0.0946, 0.0419, 0.0091, 0.0068]
    for antialias in (False, True):
        pre = replace(meta.preprocess, mean=(0.0, 0.0, 0.0), antialias=antialias)
        with torch.no_grad():
            probs, index = torch.softmax(model(pre(image)[None]), 1).topk(5)
        if not antialias:
            assert index[0].tolist() == [817, 511, 479, 751, 436]
            np.testing.assert_allclose(probs[0].numpy(), recorded, atol=0.01)
        else:
            assert float((probs[0] - torch.tensor(recorded)).abs().max()) > 0.05


@pytest.mark.parametrize("name", ["squeezenet1_1_small.safetensors", "squeezenet1_1_small.sqz"])
def test_files_written_before_the_change_keep_their_resize(name: str) -> None:
    """tests/data/compat holds files written before ``interpolation`` / ``antialias`` existed."""
    from pathlib import Path

    from squeezelab.weights.loader import load_weights

    path = Path(__file__).parent / "data" / "compat" / name
    if name.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            assert "antialias" not in json.loads(handle.metadata()["preprocess"])
    pre = load_weights(path)[1].preprocess
    assert (pre.interpolation, pre.antialias, pre.crop) == ("bilinear", True, 32)

"""The three real weight sets (bundled upstream files) on real images: the scikit-image photos of the shared data
README §5.1, and its §5.3 100-image ImageNet sample when that data is present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage import data as skdata

from squeezelab import evaluate, predict
from squeezelab.weights import WEIGHTS, build_model
from squeezelab.weights.registry import BUNDLED_DIR

FILES = {
    "squeezenet1_0.deep_compression": "squeezenet_v1.0_deep_compression/compressed_SqueezeNet.net",
    "squeezenet1_1.caffe": "squeezenet_v1.1_caffe_openvino_fp16/squeezenet1.1.xml",
    "squeezenet1_1.torchvision": "squeezenet_v1.1_torchvision_ncnn_fp16/squeezenet_v1.1.ncnn.param",
}
CATS, ESPRESSO, MOTORBIKES = {"tabby", "tiger cat", "Egyptian cat"}, {"espresso"}, {"moped", "motor scooter"}


@pytest.fixture(scope="module", params=sorted(FILES))
def pretrained(request):
    model = build_model(BUNDLED_DIR / FILES[request.param])
    meta = model.pretrained_cfg
    return request.param, model, meta


def test_metadata_matches_registry(pretrained):
    name, model, meta = pretrained
    entry = WEIGHTS[name]
    assert meta.extra["weights"] == name and meta.architecture == entry.architecture
    assert meta.preprocess == entry.preprocess and len(meta.categories) == 1000
    assert not model.training


def test_skimage_photos(pretrained):
    _, model, meta = pretrained
    photos = [skdata.chelsea(), skdata.coffee(), skdata.stereo_motorcycle()[0], np.stack([skdata.camera()] * 3, -1)]
    tops = predict(model, photos, topk=5)
    assert tops[0][0].name in CATS and tops[0][0].index in (281, 282, 285)
    assert tops[1][0].name in ESPRESSO and tops[1][0].probability > 0.8
    assert tops[2][0].name in MOTORBIKES and {tops[2][0].name, tops[2][1].name} == MOTORBIKES
    assert tops[3][0].name == "tripod"
    for top in tops:
        probs = [s.probability for s in top]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6


def test_imagenet_sample_accuracy(pretrained, imagenet_samples: Path):
    name, model, meta = pretrained
    result = evaluate(model, imagenet_samples, batch_size=100, workers=0)
    assert result["count"] == 100 and result["skipped"] == 0
    # The registry records what its preprocessing measures (benchmarks/resize_antialias.py); 1 image of slack.
    metrics = WEIGHTS[name].metrics
    assert abs(result["top1"] - metrics["samples100_top1"]) <= 1, result
    assert abs(result["top5"] - metrics["samples100_top5"]) <= 1, result
    assert sum(c["count"] for c in result["per_class"].values()) == 100
    assert sorted(int(k) for k in result["per_class"]) == list(range(0, 1000, 10))

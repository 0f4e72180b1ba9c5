"""INT8 (``squeezelab.optimize(..., backend="int8")``) against its own fp32 model, on each weights' own data.

The oracles are the fp32 PyTorch model and the data's labels: the Caffe weights (BGR, 0-255, mean subtraction,
227 px) on the 100 labelled ImageNet samples, the CIFAR-10 weights (32 px, CIFAR statistics) on CIFAR-10 test
images. Calibration images are never evaluated: CIFAR-10 *train* images, or for the ImageNet weights crops of
the scikit-image and upstream photos. Bounds come from
``benchmarks/int8_latency.py`` (docs/compression.md, "INT8 that keeps accuracy"), with the margins stated.

Budget: about 2 minutes on one idle core (two INT8 builds with output-error rounding, 100 + 2,000 images).
"""

from __future__ import annotations

from pathlib import Path

import torch

import squeezelab
from squeezelab.compress.fidelity import collect_logits, compare
from squeezelab.compress.measure import photo_crops, skimage_photos
from squeezelab.data.sources import cifar10_split, folder_images
from squeezelab.weights import build_model


#: squeezenet1_1.cifar10 on CIFAR-10 test images 0, 5, ... (2,000): measured agreement 99.45% and mean KL 0.0013
#: (benchmarks/results/int8_own_data_cifar10_v3.json; 99.20% / 0.0015 and 99.15% / 0.0029 on the two checkpoints before);
#: the bounds leave 19 images and more than 3x the KL as margin, so each checkpoint's spread fits.
AGREEMENT_CIFAR10, KL_CIFAR10 = 98.5, 0.005


def _calibration_folder(folder: Path, images: list) -> Path:
    """``images`` written losslessly (PNG) to ``folder``, for ``optimize``'s folder argument."""
    folder.mkdir()
    for index, image in enumerate(images):
        image.convert("RGB").save(folder / f"{index:03d}.png")
    return folder


def _int8(model: torch.nn.Module, folder: Path) -> torch.nn.Module:
    torch.set_num_threads(1)
    return squeezelab.optimize(model, backend="int8", calibration=folder, threads=1, spinning=False).runner


def test_int8_cifar10_weights_keep_top1_on_cifar10_test(tmp_path, cifar10_zips):
    """squeezenet1_1.cifar10, 2,000 CIFAR-10 test images (every 5th): INT8 top-1 within 0.5 of fp32."""
    model = build_model("squeezenet1_1.cifar10")
    preprocess = model.pretrained_cfg.require_preprocess("the test")
    train = cifar10_split(cifar10_zips, "train").subset(64)
    int8 = _int8(model, _calibration_folder(tmp_path / "calibration", train.decoded()))
    test = cifar10_split(cifar10_zips, "test").subset(2000).batches(preprocess, batch_size=100)
    logits, labels = collect_logits({"fp32": model, "int8": int8}, test)
    fidelity = compare(logits["fp32"], logits["int8"], labels)
    assert fidelity.labelled == 2000 and fidelity.top1_parent > 80.0  # the weights and their preprocessing fit
    assert fidelity.top1_child >= fidelity.top1_parent - 0.5, fidelity.summary()
    assert fidelity.agreement >= AGREEMENT_CIFAR10 and fidelity.mean_kl <= KL_CIFAR10, fidelity.summary()


def test_int8_caffe_weights_with_their_bgr_preprocessing(tmp_path, imagenet_samples, upstream_photos):
    """squeezenet1_1.caffe (BGR 0-255 at 227 px), calibrated on crops of 9 photos: top-1, agreement and KL
    against fp32 on the 100 labelled ImageNet samples; ``optimize``'s own check passes it (every fp32-decisive
    calibration crop keeps its answer).

    Measured (benchmarks/results/int8_own_data.json; classifier convolution in fp32): fp32 70%, INT8 69%,
    agreement 95% (the changed answers are near-ties), mean KL 0.009; with every convolution INT8 67%, 91% and
    0.023. 100 images cannot resolve the issue's 0.5 points (docs/compression.md); the bounds keep one image
    of top-1, two of agreement and half the KL as margin.
    """
    model = build_model("squeezenet1_1.caffe")
    preprocess = model.pretrained_cfg.require_preprocess("the test")
    assert preprocess.channel_order == "BGR" and preprocess.scale == 1.0  # the case the old RGB 0-1 check missed
    photos = skimage_photos() + folder_images(upstream_photos).decoded()
    int8 = _int8(model, _calibration_folder(tmp_path / "calibration", photo_crops(photos, 64)))
    samples = folder_images(imagenet_samples).batches(preprocess, batch_size=50)
    logits, labels = collect_logits({"fp32": model, "int8": int8}, samples)
    fidelity = compare(logits["fp32"], logits["int8"], labels)
    assert fidelity.labelled == 100 and fidelity.top1_parent == 70.0  # the registry's samples100_top1 for these weights
    assert fidelity.top1_child >= fidelity.top1_parent - 2.0, fidelity.summary()
    assert fidelity.agreement >= 93.0 and fidelity.mean_kl <= 0.014, fidelity.summary()

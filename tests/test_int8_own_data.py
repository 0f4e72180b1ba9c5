"""INT8 (``squeezelab.optimize(..., backend="int8")``) against its own fp32 model, on each weights' own data.

The oracles are the fp32 PyTorch model and the data's labels: the Caffe weights (BGR, 0-255, mean subtraction,
227 px) on the 100 labelled ImageNet samples plus CIFAR-10 test images upscaled (unlabeled for them), the
CIFAR-10 weights (32 px, CIFAR statistics) on CIFAR-10 test images. Calibration images are never evaluated:
CIFAR-10 *train* images (and, for ImageNet weights, the scikit-image photos). Bounds come from
``benchmarks/int8_latency.py`` (docs/compression.md, "INT8 that keeps accuracy"), with the margins stated.

Budget: about 2 minutes on one core (two INT8 builds with output-error rounding, 1,100 + 2,000 images).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import squeezelab
from squeezelab.compress.fidelity import cifar10_images, collect_logits, compare, folder_images
from squeezelab.compress.measure import skimage_photos
from squeezelab.weights import build_model


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
    train = cifar10_images(preprocess, data_dir=cifar10_zips, split="train", limit=64)
    int8 = _int8(model, _calibration_folder(tmp_path / "calibration", [read() for read in train.readers]))
    test = cifar10_images(preprocess, data_dir=cifar10_zips, limit=2000, batch_size=100, labelled=True)
    logits, labels = collect_logits({"fp32": model, "int8": int8}, test)
    fidelity = compare(logits["fp32"], logits["int8"], labels)
    assert fidelity.labelled == 2000 and fidelity.top1_parent > 80.0  # the weights and their preprocessing fit
    assert fidelity.top1_child >= fidelity.top1_parent - 0.5, fidelity.summary()
    assert fidelity.agreement >= AGREEMENT_CIFAR10 and fidelity.mean_kl <= KL_CIFAR10, fidelity.summary()


def test_int8_caffe_weights_keep_top1_with_their_bgr_preprocessing(tmp_path, cifar10_zips, imagenet_samples):
    """squeezenet1_1.caffe (BGR 0-255 at 227 px): top-1 on the 100 ImageNet samples within 0.5 of fp32 (no net
    loss), and top-1 agreement / KL with fp32 on 1,000 CIFAR-10 test images upscaled as the weights say."""
    model = build_model("squeezenet1_1.caffe")
    preprocess = model.pretrained_cfg.require_preprocess("the test")
    assert preprocess.channel_order == "BGR" and preprocess.scale == 1.0  # the case the old RGB 0-1 check missed
    train = cifar10_images(preprocess, data_dir=cifar10_zips, split="train", limit=58)
    folder = _calibration_folder(tmp_path / "calibration", skimage_photos() + [read() for read in train.readers])
    int8 = _int8(model, folder)
    samples = folder_images(imagenet_samples, preprocess, batch_size=50)
    logits, labels = collect_logits({"fp32": model, "int8": int8}, samples)
    labelled = compare(logits["fp32"], logits["int8"], labels)
    assert labelled.labelled == 100 and labelled.top1_parent >= 55.0  # fp32 reads these images right
    assert labelled.top1_child >= labelled.top1_parent - 0.5, labelled.summary()
    upscaled = cifar10_images(preprocess, data_dir=cifar10_zips, limit=1000, batch_size=50)
    logits, labels = collect_logits({"fp32": model, "int8": int8}, upscaled)
    unlabeled = compare(logits["fp32"], logits["int8"], labels)
    assert unlabeled.agreement >= AGREEMENT_CAFFE and unlabeled.mean_kl <= KL_CAFFE, unlabeled.summary()

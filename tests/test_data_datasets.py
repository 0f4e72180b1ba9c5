"""Dataset loaders against independent decoders: sklearn digits, zipfile+PIL, a hand-written IDX file."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DistributedSampler

from squeezelab.data import EpochSampler, build_datasets
from squeezelab.data.datasets import DataSource, parse_data_source
from squeezelab.errors import SqueezelabError


def test_digits_split_is_stratified_and_matches_sklearn() -> None:
    from sklearn.datasets import load_digits

    bundle = build_datasets("digits", 8, augment=False)
    assert (len(bundle.train), len(bundle.val)) == (1438, 359)
    assert bundle.in_chans == 1 and bundle.classes == [str(i) for i in range(10)]
    assert np.bincount(bundle.val.labels).min() >= 35  # 20% of each of the ~180 images per class
    digits = load_digits()
    # At 8 px the eval transform is only scaling and normalisation: invert it and find the sklearn image.
    x, y = bundle.val[0]
    pixels = (x[0] * bundle.preprocess.std[0] + bundle.preprocess.mean[0]) * 255.0
    expected = np.round(digits.images * (255.0 / 16.0))
    match = np.flatnonzero(np.abs(expected - pixels.numpy()[None]).max(axis=(1, 2)) < 1e-3)
    assert len(match) >= 1 and digits.target[match[0]] == y


def test_cifar10_zip_members_decode_like_pil(cifar10_zips: Path) -> None:
    bundle = build_datasets(f"cifar10:{cifar10_zips}", 32, augment=False, train_limit=20, val_limit=10)
    assert bundle.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert (len(bundle.train), len(bundle.val)) == (20, 10)
    member = bundle.val.source.readers[3].member
    with zipfile.ZipFile(cifar10_zips / "cifar10_test_jpeg.zip") as archive, archive.open(member) as handle:
        reference = bundle.preprocess(Image.open(handle).convert("RGB"))
    x, y = bundle.val[3]
    assert torch.equal(x, reference)
    assert bundle.classes[y] == member.split("/")[-2]


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_idx_reader(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(12, 28, 28), dtype=np.uint8)
    labels = np.arange(12) % 10
    for split in ("train", "t10k"):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", images)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labels)
    bundle = build_datasets(f"fashion-mnist:{tmp_path}", 28, augment=False)
    assert len(bundle.train) == 12 and bundle.val.labels == labels.tolist()
    x, _ = bundle.val[5]
    assert torch.allclose(x[0] * 0.3530 + 0.2860, torch.tensor(images[5] / 255.0, dtype=torch.float32), atol=1e-5)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0\0\x08\x01\0\0\0\x09abc"))
    with pytest.raises(SqueezelabError, match="does not match its IDX header"):
        build_datasets(f"fashion-mnist:{tmp_path}")


def test_fashion_mnist_augmentation_flips_but_never_shifts(tmp_path: Path) -> None:
    """Fashion-MNIST's products are centred on the canvas, so its augmentation is the flip alone
    (docs/training.md, "Short schedules"); CIFAR-style data still get the pad-and-crop shift."""
    images = np.random.default_rng(1).integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    for split in ("train", "t10k"):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", images)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(4))
    plain = build_datasets(f"fashion-mnist:{tmp_path}", 28, augment=False).train[2][0]
    augmented = build_datasets(f"fashion-mnist:{tmp_path}", 28).train
    views = [augmented[(2, seed)][0] for seed in range(16)]
    assert all(torch.equal(v, plain) or torch.equal(v, plain.flip(-1)) for v in views)
    assert any(torch.equal(v, plain.flip(-1)) for v in views) and any(torch.equal(v, plain) for v in views)
    digits_plain = build_datasets("digits", 16, augment=False).train[3][0]
    digits = build_datasets("digits", 16).train
    assert any(not torch.equal(digits[(3, seed)][0], digits_plain) for seed in range(16))


def test_epoch_sampler_is_distributed_sampler_with_seeds() -> None:
    data = list(range(10))
    for rank in range(2):
        reference = list(DistributedSampler(data, num_replicas=2, rank=rank, shuffle=True, seed=3))
        ours = list(EpochSampler(data, seed=3, epoch=0, rank=rank, world_size=2))
        assert [i for i, _ in ours] == reference
    resumed = list(EpochSampler(data, seed=3, epoch=1, start=4))
    assert resumed == list(EpochSampler(data, seed=3, epoch=1))[4:]


def test_augmentation_is_seeded_per_sample() -> None:
    bundle = build_datasets("digits", 16)
    a, b = bundle.train[(7, 11)][0], bundle.train[(7, 11)][0]
    assert torch.equal(a, b)
    assert any(not torch.equal(a, bundle.train[(7, s)][0]) for s in range(12, 20))


def test_image_folder_split_and_bad_folders(tmp_path: Path) -> None:
    with pytest.raises(SqueezelabError, match="not a directory"):
        build_datasets(str(tmp_path / "missing"))
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(SqueezelabError, match="no images"):
        build_datasets(str(tmp_path / "empty"))
    for c in ("a", "b"):
        (tmp_path / "flat" / c).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (12, 12), (40 * i, 0, 0)).save(tmp_path / "flat" / c / f"{i}.png")
    bundle = build_datasets(str(tmp_path / "flat"), 16, val_fraction=0.4)
    assert bundle.classes == ["a", "b"] and (len(bundle.train), len(bundle.val)) == (6, 4)
    assert bundle.train[0][0].shape == (3, 16, 16)


@pytest.mark.parametrize("text, kind, location", [
    ("digits", "digits", ""), ("Fashion-MNIST", "fashion-mnist", ""),
    ("fashion-mnist:/usr/share/x", "fashion-mnist", "/usr/share/x"), ("cifar10:../data", "cifar10", "../data"),
    ("cifar10", "folder", "cifar10"), ("photos/train", "folder", "photos/train"), ("C:/img", "folder", "C:/img"),
])
def test_one_parser_reads_every_data_source(text: str, kind: str, location: str):
    """``train --data``, ``eval --data`` and the sweep's cache keys all read the string through it."""
    assert parse_data_source(text) == DataSource(kind, location)

"""The one image-source layer (``squeezelab.data.sources``) against independent references: Python's ``zipfile``
and PIL read the same zips and files directly, folders are laid out by the test, subsets are computed by hand."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import torch
from PIL import Image

from squeezelab.data.imagenet import imagenet_wnids
from squeezelab.data.preprocess import CAFFE, CIFAR10_32, TORCHVISION, Preprocess
from squeezelab.data.sources import (SKIPPED_LABEL, UNLABELLED, ImageDataset, ModelInput, cifar10_split, class_folders,
                                     folder_images, grey_arrays, labelled_folder, pil_images, zip_split)
from squeezelab.errors import SqueezelabError


def _png(value: int, size: tuple[int, int] = (6, 4)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (value, 255 - value, value // 2)).save(buffer, "PNG")
    return buffer.getvalue()


def test_zip_split_matches_zipfile_read_directly(cifar10_zips: Path) -> None:
    """Every CIFAR-10 test member: the count, each label (sorted class folder) and the pixels of a few members,
    against ``zipfile`` and PIL reading the zip themselves."""
    path = cifar10_zips / "cifar10_test_jpeg.zip"
    source = cifar10_split(cifar10_zips, "test")
    with zipfile.ZipFile(path) as archive:
        members = sorted(n for n in archive.namelist() if n.lower().endswith(".jpg"))
        classes = sorted({PurePosixPath(n).parent.name for n in members})
        assert len(source) == len(members) == 10_000
        assert source.classes == tuple(classes) and len(classes) == 10
        assert list(source.labels) == [classes.index(PurePosixPath(n).parent.name) for n in members]
        assert np.bincount(source.labels).tolist() == [1000] * 10
        for index in (0, 4321, 9999):
            with archive.open(members[index]) as handle:
                expected = np.asarray(Image.open(handle).convert("RGB"))
            assert np.array_equal(np.asarray(source.read(index)), expected)


def test_zip_split_keeps_only_images_in_class_folders(tmp_path: Path) -> None:
    path = tmp_path / "cifar10_train_jpeg.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("train/dog/1.png", _png(1))
        archive.writestr("train/cat/2.png", _png(2))
        archive.writestr("train/cat/1.png", _png(3))
        archive.writestr("train/cat/notes.txt", b"not an image")
        archive.writestr("train/cat/._1.png", b"AppleDouble")
        archive.writestr("loose.png", _png(4))  # not under <split>/<class>/
    source = zip_split(path)
    assert [reader.member for reader in source.readers] == ["train/cat/1.png", "train/cat/2.png", "train/dog/1.png"]
    assert source.labels == (0, 0, 1) and source.classes == ("cat", "dog")
    assert source.read(2).getpixel((0, 0)) == (1, 254, 0)
    with pytest.raises(SqueezelabError, match="not found"):
        cifar10_split(tmp_path, "test")
    with pytest.raises(SqueezelabError, match="'test' or 'train'"):
        cifar10_split(tmp_path, "val")
    (tmp_path / "broken.zip").write_bytes(b"PK not really")
    with pytest.raises(SqueezelabError, match="not a readable zip"):
        zip_split(tmp_path / "broken.zip")


def test_subset_is_evenly_spaced_and_sample_is_a_fixed_random_subset() -> None:
    """10 images, limit 4: indices floor(i * 10 / 4) = 0, 2, 5, 7 (by hand); no limit or a larger one keeps all."""
    source = grey_arrays(np.arange(10, dtype=np.uint8).reshape(10, 1, 1).repeat(2, 1), list(range(10)), "ten")
    assert source.subset(4).labels == (0, 2, 5, 7)
    assert [int(np.asarray(source.subset(4).read(i))[0, 0]) for i in range(4)] == [0, 2, 5, 7]
    assert source.subset(None).labels == source.subset(10).labels == source.subset(99).labels == tuple(range(10))
    with pytest.raises(SqueezelabError, match="at least 1"):
        source.subset(0)
    picked = source.sample(4, seed=3)
    assert len(picked) == 4 and list(picked.labels) == sorted(set(picked.labels))  # source order, no repeats
    assert picked.labels == source.sample(4, seed=3).labels
    assert len({source.sample(4, seed=s).labels for s in range(6)}) > 1  # another seed, another subset
    assert source.sample(None, seed=3).labels == tuple(range(10))


def test_class_folders_and_labelled_folder_layouts(tmp_path: Path) -> None:
    """A tree laid out by hand: class folders (sorted order, nested files, non-images skipped) and a flat folder
    of ImageNet file names (label = the wnid's line in the synset list)."""
    wnids = imagenet_wnids()
    tree = tmp_path / "tree"
    for folder, names in (("b", ["2.png", "sub/1.png", "readme.txt"]), ("a", ["x.png"]), (".hidden", ["y.png"])):
        for name in names:
            (tree / folder / name).parent.mkdir(parents=True, exist_ok=True)
            (tree / folder / name).write_bytes(_png(len(name)))
    (tree / "top.png").write_bytes(_png(9))
    source = class_folders(tree)
    assert source.classes == ("a", "b") and source.labels == (0, 1, 1)
    assert [r.path.relative_to(tree).as_posix() for r in source.readers] == ["a/x.png", "b/2.png", "b/sub/1.png"]
    scanned = labelled_folder(tree, 10)
    assert scanned.labels == (0, 1, 1) and scanned.layout == "imagefolder (sorted folders)"
    assert sorted(p.name for p in scanned.skipped) == ["readme.txt", "top.png"] and not scanned.warnings
    assert labelled_folder(tree, 1000).warnings  # sorted order for ImageNet weights is surely wrong
    flat = tmp_path / "flat"
    flat.mkdir()
    for wnid in (wnids[999], wnids[0], wnids[10]):
        (flat / f"{wnid}_photo.JPEG").write_bytes(_png(5))
    (flat / "other.png").write_bytes(_png(6))
    found = labelled_folder(flat, 1000)
    assert found.labels == (0, 10, 999) and "flat" in found.layout and [p.name for p in found.skipped] == ["other.png"]
    with pytest.raises(SqueezelabError, match="no labelled images"):
        labelled_folder(flat, 10)  # ImageNet file names mean nothing to a 10-class model
    with pytest.raises(SqueezelabError, match="no images in class sub-folders"):
        class_folders(flat)


def test_folder_images_recurse_and_label_imagenet_names(tmp_path: Path) -> None:
    wnids = imagenet_wnids()
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / f"{wnids[3]}_a.png").write_bytes(_png(1))
    (tmp_path / "deep" / "er" / "b.png").write_bytes(_png(2))
    (tmp_path / "deep" / "c.txt").write_text("no")
    source = folder_images(tmp_path)
    assert [r.path.name for r in source.readers] == ["b.png", f"{wnids[3]}_a.png"]  # sorted full paths
    assert source.labels == (UNLABELLED, 3)
    with pytest.raises(SqueezelabError, match=r"calibration image folder .* does not exist.*a few dozen"):
        folder_images(tmp_path / "missing", what="calibration image", purpose="calibration needs a few dozen")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SqueezelabError, match="no images in"):
        folder_images(tmp_path / "empty")


@pytest.mark.parametrize("preprocess", [CIFAR10_32, CAFFE, TORCHVISION], ids=["cifar32", "caffe", "torchvision"])
def test_batches_equal_preprocess_of_each_image(preprocess: Preprocess) -> None:
    """``Batches`` (and ``ModelInput``'s NumPy path for images at the input size) give what ``Preprocess`` gives
    image by image: a 32 px image at 32 px, and larger ones resized."""
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((32, 32), (40, 300))]
    images.append(Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)))  # grey
    source = pil_images(images)
    got = list(source.batches(preprocess, batch_size=2))
    assert [len(labels) for _, labels in got] == [2, 1] and all((labels == UNLABELLED).all() for _, labels in got)
    assert torch.equal(torch.cat([x for x, _ in got]), torch.stack([preprocess(image) for image in images]))


def test_dataset_skips_or_reports_an_image_that_does_not_decode(tmp_path: Path) -> None:
    for name, data in (("a/good.png", _png(7, (32, 32))), ("a/bad.png", b"\x89PNG broken"), ("b/ok.png", _png(8))):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
    source = class_folders(tmp_path)
    training = ImageDataset(source, ModelInput(CIFAR10_32))
    x, label = training[0]
    assert label == SKIPPED_LABEL and x.shape == (3, 32, 32) and not x.any()
    assert training[1][1] == 0 and torch.equal(training[1][0], CIFAR10_32(Image.open(tmp_path / "a/good.png")))
    reporting = ImageDataset(source, ModelInput(CIFAR10_32), report_errors=True)
    _, label, error = reporting[0]
    assert label == 0 and "bad.png" in error and len(error.splitlines()) == 1
    assert reporting[2][2] == ""


def test_joining_relabelling_and_arrays() -> None:
    grey = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    arrays = grey_arrays(grey, [1, 0], "grey", ["x", "y"])
    assert np.array_equal(np.asarray(arrays.read(1)), grey[1]) and arrays.read(1).mode == "L"
    photo = Image.new("RGB", (5, 5), (1, 2, 3))
    joined = arrays + pil_images([photo])
    assert len(joined) == 3 and joined.labels == (1, 0, UNLABELLED) and joined.read(2) is photo
    assert joined.classes == ()  # no shared class names
    assert arrays.relabelled([5, 7], ["p"] * 8).labels == (7, 5) and arrays.unlabelled().labels == (-1, -1)
    assert arrays.take([1, 1]).labels == (0, 0)

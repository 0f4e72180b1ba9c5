"""Images are read upright and unreadable data is said, never trained on silently (issue 28, items 4 and 5).

EXIF orientation: cameras store the sensor's rows plus a tag saying how to turn them; every stage reads
images through ``preprocess.read_image``, which turns them upright. Each test writes the upright pixels
turned by NumPy as the EXIF specification (CIPA DC-008, tag 0x0112) describes the stored rows, tags them,
and compares what each stage reads with the upright image.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from squeezelab.data.datasets import build_datasets, cifar10_test_set
from squeezelab.data.preprocess import Preprocess, read_image
from squeezelab.inference import predict
from squeezelab.models import create_model
from squeezelab.weights.checkpoint import CheckpointMeta
from test_train_resume import _cli

ORIENTATION = 0x0112
UPRIGHT = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)  # wider than tall, asymmetric
#: orientation tag -> the stored rows of an image shown as ``UPRIGHT`` (CIPA DC-008 table: 6 = the stored image is
#: shown turned 90 degrees clockwise, so it is stored turned 90 degrees counter-clockwise).
STORED = {1: UPRIGHT, 2: UPRIGHT[:, ::-1], 3: UPRIGHT[::-1, ::-1], 4: UPRIGHT[::-1], 5: UPRIGHT.transpose(1, 0, 2),
          6: np.rot90(UPRIGHT, 1), 7: np.rot90(UPRIGHT, 2).transpose(1, 0, 2), 8: np.rot90(UPRIGHT, -1)}


def _tagged(orientation: int, fmt: str = "PNG", **options) -> bytes:
    """The stored pixels of ``UPRIGHT`` for ``orientation``, encoded with that EXIF orientation tag."""
    import io

    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(STORED[orientation])).save(buffer, fmt, exif=exif, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_read_image_turns_every_orientation_upright(orientation: int, tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(_tagged(orientation))
    assert Image.open(path).size == ((40, 24) if orientation < 5 else (24, 40))  # as stored, before turning
    assert np.array_equal(np.asarray(read_image(path)), UPRIGHT)


def test_a_camera_jpeg_reads_like_its_upright_copy(tmp_path: Path) -> None:
    """A JPEG stored sideways with tag 6 decodes to the upright JPEG's pixels up to JPEG rounding."""
    smooth = np.clip(np.add.outer(np.arange(48) * 4, np.arange(64) * 3), 0, 255).astype(np.uint8)
    upright = np.stack([smooth, smooth[::-1], 255 - smooth], axis=2)
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))).save(tmp_path / "side.jpg", quality=98, exif=exif,
                                                                     subsampling=0)
    Image.fromarray(upright).save(tmp_path / "up.jpg", quality=98, subsampling=0)
    side, up = (np.asarray(read_image(tmp_path / n), np.float64) for n in ("side.jpg", "up.jpg"))
    assert np.asarray(Image.open(tmp_path / "side.jpg")).shape == (64, 48, 3)  # the stored rows are sideways
    assert side.shape == up.shape == (48, 64, 3)
    assert np.abs(side - up).mean() < 1.0 < np.abs(side - up[::-1, ::-1]).mean()


def test_predict_training_folders_and_zips_read_upright(tmp_path: Path) -> None:
    """The same image upright and tagged sideways gives the same prediction, training tensor and zip tensor."""
    (tmp_path / "upright.png").write_bytes(_tagged(1))
    (tmp_path / "sideways.png").write_bytes(_tagged(6))
    torch.manual_seed(0)
    model = create_model("squeezenet1_1", num_classes=10).eval()
    meta = CheckpointMeta("squeezenet1_1", num_classes=10, preprocess=Preprocess(crop=64, resize=64),
                          categories=[f"c{i}" for i in range(10)])
    model.pretrained_cfg = meta
    up, side = predict(model, [tmp_path / "upright.png", tmp_path / "sideways.png"], topk=10)
    assert [c.index for c in up] == [c.index for c in side]  # same pixels; a batch row may round differently
    assert [c.probability for c in up] == pytest.approx([c.probability for c in side], rel=1e-5)

    for name, orientation in (("a", 1), ("b", 6)):
        for i in range(2):
            (tmp_path / "folder" / name).mkdir(parents=True, exist_ok=True)
            (tmp_path / "folder" / name / f"{i}.png").write_bytes(_tagged(orientation))
    bundle = build_datasets(str(tmp_path / "folder"), 32, augment=False, val_fraction=0.5)
    tensors = [bundle.train[i][0] for i in range(len(bundle.train))]
    assert len(tensors) == 2 and torch.equal(tensors[0], tensors[1])

    with zipfile.ZipFile(tmp_path / "cifar10_test_jpeg.zip", "w") as archive:
        archive.writestr("test/cat/0.png", _tagged(1))
        archive.writestr("test/dog/0.png", _tagged(8))
    images, classes = cifar10_test_set(tmp_path, Preprocess(crop=32, resize=32, resize_mode="squash"))
    assert classes == ["cat", "dog"] and torch.equal(images[0][0], images[1][0])


def test_a_large_unreadable_share_is_one_warning(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """2 of 16 training images do not decode: training runs on the 14 others and warns once (not per epoch)."""
    rng = np.random.default_rng(3)
    for split, count in (("train", 8), ("val", 3)):
        for name in ("a", "b"):
            (tmp_path / "data" / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / "data" / split / name / f"{i}.png")
    for name in ("a", "b"):
        (tmp_path / "data" / "train" / name / "0.png").write_bytes(b"\x89PNG broken")
    assert _cli(["train", "squeezenet1_1", "--data", str(tmp_path / "data"), "--input-size", "8", "--epochs", "2",
                 "--batch-size", "8", "--threads", "1", "--no-progress", "-o", str(tmp_path / "run")]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "2 of the 16 training images" in warnings[0] and "(12%)" in warnings[0], warnings
    assert captured.out.count("2 unreadable images skipped") == 2


def test_one_image_rule_for_folders_and_zips(tmp_path: Path) -> None:
    """Hidden files (macOS ``._x.png`` resource forks, ``__MACOSX/`` copies) are not images anywhere: training
    neither counts them as unreadable images nor warns."""
    for name in ("a", "b"):
        (tmp_path / "folder" / name).mkdir(parents=True)
        for i in range(2):
            (tmp_path / "folder" / name / f"{i}.png").write_bytes(_tagged(1))
        (tmp_path / "folder" / name / "._0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    bundle = build_datasets(str(tmp_path / "folder"), 32, augment=False, val_fraction=0.5)
    assert len(bundle.train) + len(bundle.val) == 4 and bundle.fingerprint["images"] == 4
    with zipfile.ZipFile(tmp_path / "cifar10_test_jpeg.zip", "w") as archive:
        for name in ("cat", "dog"):
            archive.writestr(f"test/{name}/0.png", _tagged(1))
            archive.writestr(f"__MACOSX/test/{name}/._0.png", b"\x00\x05\x16\x07")
    images, _ = cifar10_test_set(tmp_path, Preprocess(crop=32, resize=32, resize_mode="squash"))
    assert len(images) == 2


def test_no_stage_has_its_own_image_suffix_rule() -> None:
    """Every stage asks ``preprocess.is_image_file_name``; only ``preprocess`` reads ``IMAGE_EXTENSIONS``
    (``squeezelab.inference`` re-exports the constant)."""
    package = Path(__file__).resolve().parents[1] / "src" / "squeezelab"
    readers = {str(p.relative_to(package)) for p in package.rglob("*.py") if "IMAGE_EXTENSIONS" in p.read_text()}
    assert readers == {"data/preprocess.py", "inference/__init__.py"}

"""Resume trains on the run's own data: an absolute source and a data fingerprint in the run (issue 28, item 3).

A run records ``--data`` as an absolute path and a fingerprint of its images (relative paths and sizes,
zip central directories, pixel digests). Resuming from another working directory reads the run's folder,
not the one a relative path would name there; a moved folder is accepted by its new path; added, removed
or changed images are refused in one line before anything is written.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from squeezelab.data.datasets import build_datasets
from squeezelab.data.fingerprint import check_same_data, zips_fingerprint
from squeezelab.errors import SqueezelabError
from test_train_resume import _assert_same_run, _cli, _one_line_error, _snapshot

RUN_FLAGS = ["--input-size", "8", "--batch-size", "8", "--epochs", "2", "--lr", "0.02", "--seed", "1",
             "--val-fraction", "0.25", "--threads", "1", "--no-progress"]


def _image_folder(root: Path, per_class: int = 8, shade: int = 0) -> Path:
    """Two class folders of small random PNGs (``shade`` changes every pixel, not the file count)."""
    rng = np.random.default_rng(shade)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def _add_image(folder: Path, name: str = "new.png") -> None:
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "a" / name)


def test_folder_fingerprint_survives_a_move_and_sees_every_change(tmp_path: Path) -> None:
    data = _image_folder(tmp_path / "data")
    first = build_datasets(str(data), 8).fingerprint
    assert first["images"] == 16 and first["classes"] == 2 and first["kind"] == "folder"
    assert first["bytes"] == sum(p.stat().st_size for p in data.rglob("*.png"))
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(data, moved)
    assert build_datasets(str(moved), 8).fingerprint == first
    (moved / "a" / "0.png").rename(moved / "a" / "renamed.png")
    assert build_datasets(str(moved), 8).fingerprint["sha256"] != first["sha256"]
    with open(data / "b" / "3.png", "ab") as handle:
        handle.write(b"\0")  # one byte longer: still decodes, another file
    assert build_datasets(str(data), 8).fingerprint["bytes"] == first["bytes"] + 1
    _add_image(data)
    assert build_datasets(str(data), 8).fingerprint["images"] == 17


def test_zip_fingerprint_reads_member_crcs(tmp_path: Path) -> None:
    """Two zips with the same names and sizes but one changed byte differ (the CRC-32 is in the digest)."""
    paths = []
    for k, payload in enumerate((b"\x01" * 64, b"\x01" * 63 + b"\x02")):
        paths.append(tmp_path / f"{k}.zip")
        with zipfile.ZipFile(paths[-1], "w") as archive:
            archive.writestr("train/a/0.jpg", payload)
    one, two = (zips_fingerprint([p], 1, ["a"]) for p in paths)
    assert one["bytes"] == two["bytes"] == 64 and one["sha256"] != two["sha256"]


def test_digits_fingerprint_is_stable() -> None:
    assert build_datasets("digits", 8).fingerprint == build_datasets("digits", 8, seed=5).fingerprint


def test_a_run_saved_before_fingerprints_resumes_only_on_its_own_source() -> None:
    current = {"kind": "folder", "images": 3, "classes": 2, "bytes": 10, "sha256": "x"}
    check_same_data(None, current, "/data", "/data")
    with pytest.raises(SqueezelabError, match="predates data fingerprints"):
        check_same_data(None, current, "/moved", "/data")
    with pytest.raises(SqueezelabError, match="as before, but other file names"):
        check_same_data(dict(current, sha256="y"), current, "/data", "/data")


@pytest.fixture
def stopped_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """(data folder, a run stopped after epoch 1 of 2, the uninterrupted run), both made with ``--data data``
    relative to ``tmp_path``."""
    data = _image_folder(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    assert _cli(["train", "squeezenet1_1", "--data", "data", *RUN_FLAGS, "-o", "full"]) == 0
    assert _cli(["train", "squeezenet1_1", "--data", "data", *RUN_FLAGS, "--stop-after", "1", "-o", "run"]) == 0
    return data, tmp_path / "run", tmp_path / "full"


def test_resume_from_another_directory_reads_the_runs_own_folder(stopped_run, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """From a folder with another ``data/`` beside it, the run still reads its own images, bit for bit."""
    data, run, full = stopped_run
    assert json.loads((run / "config.json").read_text())["data"] == str(data.resolve())
    _image_folder(tmp_path / "other" / "data", per_class=5, shade=9)
    monkeypatch.chdir(tmp_path / "other")
    assert _cli(["train", "--resume", str(run), "--threads", "1", "--no-progress"]) == 0
    _assert_same_run(run, full)


def test_added_images_are_refused_before_anything_is_written(stopped_run, capsys: pytest.CaptureFixture) -> None:
    data, run, _ = stopped_run
    _add_image(data)
    before = _snapshot(run)
    capsys.readouterr()
    assert _cli(["train", "--resume", str(run), "--no-progress"]) == 2
    _one_line_error(capsys, "not the run's data", "16 images in 2 classes", "then", "17 images", "now")
    assert _snapshot(run) == before


def test_a_moved_folder_resumes_by_its_new_path(stopped_run, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data, run, full = stopped_run
    moved = tmp_path / "archive" / "images"
    moved.parent.mkdir()
    data.rename(moved)
    capsys.readouterr()
    assert _cli(["train", "--resume", str(run), "--no-progress"]) == 2
    _one_line_error(capsys, "does not exist", "--data")
    other = _image_folder(tmp_path / "other", per_class=8, shade=4)  # same counts, other pixels and sizes
    assert _cli(["train", "--resume", str(run), "--data", str(other), "--no-progress"]) == 2
    _one_line_error(capsys, "not the run's data", "the run trained on")
    assert _cli(["train", "--resume", str(run), "--data", str(moved), "--threads", "1", "--no-progress"]) == 0
    _assert_same_run(run, full)
    assert json.loads((run / "config.json").read_text())["data"] in (str(data.resolve()), str(moved.resolve()))

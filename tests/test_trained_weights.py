"""The checkpoints squeezelab trained itself (``squeezelab/weights/trained``): registered, sha256-checked,
offline, and ``squeezelab eval --data cifar10:DIR`` reproduces the accuracy the registry states."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from squeezelab.cli.main import main as cli_main
from squeezelab.data.preprocess import CIFAR10_32, CIFAR10_CLASSES
from squeezelab.demo import DemoContext, Report
from squeezelab.demo.inference import cifar10_stage
from squeezelab.io import sha256_file
from squeezelab.weights import build_model
from squeezelab.weights.registry import TRAINED_DIR, WEIGHTS, fetch_weights

TRAINED = [name for name, entry in WEIGHTS.items() if entry.dataset == "cifar10"]


def test_trained_entries_are_registered_and_bundled() -> None:
    assert "squeezenet1_1.cifar10" in TRAINED
    for name in TRAINED:
        entry = WEIGHTS[name]
        path = fetch_weights(name, allow_download=False)
        assert path.parent == TRAINED_DIR and entry.files[0].url is None
        assert sha256_file(path) == entry.files[0].sha256 and path.stat().st_size == entry.files[0].size
        model = build_model(name, architecture=entry.architecture)
        meta = model.pretrained_cfg
        # The registry entry and the checkpoint's own metadata say the same thing (one source of truth).
        assert meta.preprocess == entry.preprocess == CIFAR10_32
        assert tuple(meta.categories) == entry.categories == CIFAR10_CLASSES
        assert meta.model_kwargs == entry.model_kwargs and meta.num_classes == 10
        assert (TRAINED_DIR / "TRAINED.md").read_text().count(entry.files[0].sha256) == 1


def test_trained_files_are_package_data() -> None:
    import tomllib

    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["squeezelab"]
    package = root / "src" / "squeezelab"
    shipped = {p for pattern in patterns for p in package.glob(pattern) if p.is_file()}
    assert TRAINED_DIR / "TRAINED.md" in shipped
    assert all(TRAINED_DIR / WEIGHTS[name].files[0].filename in shipped for name in TRAINED)


@pytest.mark.parametrize("tta", ["none", "flip"])
@pytest.mark.parametrize("name", TRAINED)
def test_eval_reproduces_the_registered_cifar10_accuracy(name: str, tta: str, cifar10_zips: Path,
                                                         tmp_path: Path) -> None:
    """The stated top-1 is the training run's last-epoch val top-1 on the same 10,000 images; with
    ``--tta flip`` it is the registry's ``*_flip`` figure."""
    entry = WEIGHTS[name]
    out = tmp_path / "eval.json"
    assert cli_main(["eval", entry.architecture, "--weights", name, "--data", f"cifar10:{cifar10_zips}",
                     "--workers", "0", "--no-progress", "--tta", tta, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["count"] == 10_000 and result["layout"] == "cifar10 test zip" and result["tta"] == tta
    # Measured: the same numbers (squeezenet1_1 86.23 / 99.27; sqnxt23v5_w1 90.01 / 99.39) under native AVX-512,
    # AVX2, SSE4.1 and ATen-default kernels; the tolerance (10 images) leaves room for a borderline image on
    # other hardware.
    suffix = "_flip" if tta == "flip" else ""
    assert result["top1"] == pytest.approx(entry.metrics["cifar10_test_top1" + suffix], abs=0.1)
    assert result["top5"] == pytest.approx(entry.metrics["cifar10_test_top5" + suffix], abs=0.1)


def _fake_cifar_zip(root: Path, classes: list[str], broken: bool = True) -> Path:
    """Three random 32x32 JPEGs per class (the same ones on every call), plus, if ``broken``, one member of
    the last class that does not decode."""
    root.mkdir()
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(root / "cifar10_test_jpeg.zip", "w") as archive:
        for name in classes:
            for i in range(3):
                buffer = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "JPEG")
                archive.writestr(f"cifar10_test/{name}/{i:04d}.jpg", buffer.getvalue())
        if broken:
            archive.writestr(f"cifar10_test/{classes[-1]}/broken.jpg", b"not a jpeg")
    return root


def test_eval_of_imagenet_weights_on_cifar10_is_a_one_line_error(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = _fake_cifar_zip(tmp_path / "data", list(CIFAR10_CLASSES))
    assert cli_main(["eval", "squeezenet1_1", "--weights", "squeezenet1_1.torchvision", "--data",
                     f"cifar10:{data}", "--workers", "0", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not CIFAR-10's" in err


def test_demo_stage_scores_the_checkpoints_on_the_zip_or_the_photos(tmp_path: Path) -> None:
    data = _fake_cifar_zip(tmp_path / "data", list(CIFAR10_CLASSES))  # 30 random images + 1 broken: fake data
    clean = _fake_cifar_zip(tmp_path / "clean", list(CIFAR10_CLASSES), broken=False)
    with_zip = DemoContext(Report(tmp_path / "zip"), quick=True, data_dir=data)
    (tmp_path / "zip").mkdir()
    cifar10_stage(with_zip)
    text = (tmp_path / "zip" / "report.md").read_text()
    for name in TRAINED:
        assert (tmp_path / "zip" / f"confusion_{name}.png").stat().st_size > 1000
        scored = tmp_path / f"eval_{name}.json"  # the stage's figure: `squeezelab eval` on the 30 good images
        assert cli_main(["eval", WEIGHTS[name].architecture, "--weights", name, "--data", f"cifar10:{clean}",
                         "--workers", "0", "--no-progress", "--json", str(scored)]) == 0
        assert with_zip.artifacts[f"cifar10_top1/{name}"] == json.loads(scored.read_text())["top1"] and name in text
        assert re.search(rf"\| {re.escape(name)} .*\| +30 \|", text), text  # the broken image is left out
    without = DemoContext(Report(tmp_path / "photos"), quick=True)
    (tmp_path / "photos").mkdir()
    cifar10_stage(without)
    text = (tmp_path / "photos" / "report.md").read_text()
    assert "chelsea" in text and any(c in text for c in CIFAR10_CLASSES)

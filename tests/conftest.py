"""Shared test fixtures: where the committed test data and the optional bigger data sets live.

Everything most tests need is in the repository (``tests/data``, the weights bundled in
``squeezelab/weights/upstream``) or ships with a dependency (scikit-image photos, sklearn digits).
The bigger data sets (CIFAR-10 JPEG zips, the 100 ImageNet samples) are found in ``$SQUEEZELAB_DATA``,
else in ``../shared/data`` beside the checkout (where CI puts them). A test that needs them is skipped
when they are missing, and fails under ``CI=true``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = REPO_ROOT / "tests" / "data"
DATA_ENV = "SQUEEZELAB_DATA"

# Under pytest-xdist each worker gets one thread: two workers with two threads each on two cores make every
# parallel region wait for a descheduled thread.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, min(2, os.cpu_count() or 1)))


SLOW_ENV = "SQUEEZELAB_SLOW_TESTS"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` (minutes each) run only with ``$SQUEEZELAB_SLOW_TESTS=1`` (``make test-slow``)."""
    if os.environ.get(SLOW_ENV, "").strip() in ("1", "true"):
        return
    skip = pytest.mark.skip(reason=f"slow (minutes); run with {SLOW_ENV}=1 or make test-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def data_root() -> Path:
    """``$SQUEEZELAB_DATA`` if set, else ``<repo>/../shared/data``."""
    return Path(os.environ[DATA_ENV]) if os.environ.get(DATA_ENV) else REPO_ROOT.parent / "shared" / "data"


def require_data(path: Path, what: str) -> Path:
    """``path`` if it exists; otherwise fail under ``CI=true`` and skip elsewhere, with a one-line reason."""
    if path.exists():
        return path
    reason = f"needs {what} at {path}; set {DATA_ENV}=DIR (laid out like shared/data) or put it at ../shared/data"
    if os.environ.get("CI", "").strip().lower() in ("true", "1"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The data folder (laid out like ../shared/data)."""
    return require_data(data_root(), "the shared data (CIFAR-10 zips / ImageNet samples)")


@pytest.fixture(scope="session")
def cifar10_zips() -> Path:
    """The folder holding ``cifar10_train_jpeg.zip`` and ``cifar10_test_jpeg.zip``."""
    for name in ("cifar10_train_jpeg.zip", "cifar10_test_jpeg.zip"):
        require_data(data_root() / name, "the CIFAR-10 JPEG zips")
    return data_root()


@pytest.fixture(scope="session")
def imagenet_samples() -> Path:
    """The 100 labelled ImageNet samples (one per 10th class, label = the wnid in the file name)."""
    return require_data(data_root() / "images" / "imagenet_samples_100", "the 100 ImageNet samples")


@pytest.fixture(scope="session")
def upstream_photos() -> Path:
    """The upstream sample photos of the weights' repositories (car.png, kitten.jpg; licence unknown)."""
    return require_data(data_root() / "images" / "photos", "the upstream sample photos")


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """Committed reference files (``tests/data``; the official prototxts are in ``prototxt/``)."""
    return TEST_DATA


@pytest.fixture
def skimage_photo_dir(tmp_path: Path) -> Path:
    """A folder of scikit-image's BSD photos as PNG: chelsea (cat), coffee (espresso), rocket, astronaut."""
    from skimage import data as skdata

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea", "coffee", "rocket", "astronaut"):
        Image.fromarray(np.asarray(getattr(skdata, name)())).save(folder / f"{name}.png")
    return folder

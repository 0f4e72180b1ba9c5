"""Shared test fixtures: where the shared data and references live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
SHARED_DATA = SHARED / "data"
REFERENCE = SHARED / "reference"

# Under pytest-xdist each worker gets one thread: two workers with two threads each on two cores make every
# parallel region wait for a descheduled thread.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout (present in CI and on developer machines)."""
    assert SHARED_DATA.is_dir(), f"expected the shared data at {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    assert REFERENCE.is_dir(), f"expected the shared reference at {REFERENCE}"
    return REFERENCE

"""The full training state for ``--resume``: a ``torch.save`` file that loads with ``weights_only=True``.

It holds the model, optimizer, scheduler and AMP scaler state dicts, the
torch/CUDA/NumPy/Python RNG states, the epoch, the global step, the batches
done in the current epoch and the running sums of that epoch, and the metric
history. Only tensors, numbers, strings, lists, tuples and dicts go in, so
loading never runs pickled code. Writes go through a temp file + rename.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import SqueezelabError
from ..io import PathLike, atomic_path

STATE_FILE = "state.pt"


def capture_rng() -> dict[str, Any]:
    """All RNG states, as tensors and plain Python values."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save_state(path: PathLike, state: dict[str, Any]) -> None:
    """Write the training state atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: PathLike) -> dict[str, Any]:
    """Read a training state with ``weights_only=True``; a one-line error if it is missing or unreadable."""
    path = Path(path)
    if path.is_dir():
        path = path / STATE_FILE
    if not path.is_file():
        raise SqueezelabError(f"no training state at {path}; --resume takes a run directory written by "
                              f"'squeezelab train'")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise SqueezelabError(f"{path} is not a readable training state ({str(exc).splitlines()[0]})") from None

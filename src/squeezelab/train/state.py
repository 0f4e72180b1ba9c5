"""The run directory: the full training state for ``--resume`` and :class:`CheckpointSaver`, its one writer.

``state.pt`` is a ``torch.save`` file that loads with ``weights_only=True``.
It holds the model, optimizer, scheduler and AMP scaler state dicts, the
torch/CUDA/NumPy/Python RNG states, the epoch, the global step, the batches
done in the current epoch and the running sums of that epoch, and the metric
history. Only tensors, numbers, strings, lists, tuples and dicts go in, so
loading never runs pickled code. Writes go through a temp file + rename.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..compress.prune import save_masks
from ..errors import SqueezelabError
from ..io import PathLike, atomic_path, atomic_write_text
from ..weights.checkpoint import CheckpointMeta, save_checkpoint
from .logs import plot_curves, write_metrics

STATE_FILE = "state.pt"
CONFIG_FILE = "config.json"
MASKS_FILE = "prune_masks.safetensors"
#: Every file a run directory holds; ``--overwrite`` removes them before the new run's first write.
RUN_FILES = (CONFIG_FILE, STATE_FILE, "last.safetensors", "best.safetensors", "metrics.json", "metrics.csv",
             "curves.png", MASKS_FILE)


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


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` holds a training run (its config or its state)."""
    return (path / CONFIG_FILE).is_file() or (path / STATE_FILE).is_file()


class CheckpointSaver:
    """Writes a run directory: config and pruning masks with the first write, then state, checkpoints and metrics.

    Nothing is written before the first :meth:`save_state` or :meth:`save_epoch`, so a run that fails
    before then leaves no directory behind, and ``overwrite`` replaces an old run only once the new one
    has something to save. Only the main process (``enabled``) writes.
    """

    def __init__(self, run_dir: Path, meta: CheckpointMeta, config: dict[str, Any], *, enabled: bool = True,
                 overwrite: bool = False, masks: Optional[Mapping[str, torch.Tensor]] = None,
                 has_checkpoint: bool = False) -> None:
        self.run_dir, self.meta, self.config, self.enabled = run_dir, meta, config, enabled
        self.overwrite, self.masks = overwrite, masks
        self.has_checkpoint = has_checkpoint
        self._started = False

    @property
    def last(self) -> Path:
        return self.run_dir / "last.safetensors"

    @property
    def best(self) -> Path:
        return self.run_dir / "best.safetensors"

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        if self.overwrite:
            for name in RUN_FILES:
                (self.run_dir / name).unlink(missing_ok=True)
        atomic_write_text(self.run_dir / CONFIG_FILE, json.dumps(self.config, indent=2))
        if self.masks is not None:
            save_masks(self.run_dir / MASKS_FILE, self.masks)

    def save_state(self, state: dict[str, Any]) -> None:
        """Write ``state.pt`` (after an interruption or at the end of an epoch)."""
        if self.enabled:
            self._start()
            save_state(self.run_dir / STATE_FILE, state)

    def save_epoch(self, model: nn.Module, improved: bool, state: dict[str, Any],
                   history: Sequence[dict[str, Any]], summary: dict[str, Any], title: str) -> None:
        """End of an epoch: last (and best) checkpoint, state, metrics.json/csv and curves.png."""
        if not self.enabled:
            return
        self._start()
        save_checkpoint(self.last, model.state_dict(), self.meta)
        if improved:
            save_checkpoint(self.best, model.state_dict(), self.meta)
        self.has_checkpoint = True
        save_state(self.run_dir / STATE_FILE, state)
        write_metrics(self.run_dir, history, summary)
        plot_curves(self.run_dir, history, title)

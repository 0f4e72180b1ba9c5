"""The run directory: the full training state for ``--resume`` and :class:`CheckpointSaver`, its one writer.

``state.pt`` is a ``torch.save`` file that loads with ``weights_only=True``.
It holds the model, optimizer, scheduler and AMP scaler state dicts, the
torch/CUDA/NumPy/Python RNG states, the epoch, the global step, the batches
done in the current epoch and the running sums of that epoch, and the metric
history. Only tensors, numbers, strings, lists, tuples and dicts go in, so
loading never runs pickled code. Writes go through a temp file + rename.

A run holds an OS lock (:func:`locked_run_dir`, ``fcntl.flock`` on ``RUN/.lock``) from before it
reads anything until it returns, so two trainings never write one directory. ``--overwrite`` moves
the old run's files aside into ``RUN/.previous-run`` only when the new run first saves, and deletes
them only once that save (``state.pt`` included) is complete; a failed save moves them back, and a
save cut short by a kill is rolled back the next time the directory is locked (docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..compress.prune import save_masks
from ..errors import SqueezelabError
from ..extras import available, note_missing
from ..io import PathLike, atomic_write_bytes, atomic_write_text, check_output, remove_stray_temporaries
from ..weights.checkpoint import CheckpointMeta, save_checkpoint
from .logs import plot_curves, write_metrics

STATE_FILE = "state.pt"
CONFIG_FILE = "config.json"
MASKS_FILE = "prune_masks.safetensors"
CURVES_FILE = "curves.png"
#: Every file a run directory holds; ``--overwrite`` replaces them with the new run's first save.
RUN_FILES = (CONFIG_FILE, STATE_FILE, "last.safetensors", "best.safetensors", "metrics.json", "metrics.csv",
             CURVES_FILE, MASKS_FILE)
#: The lock file a training holds (``fcntl.flock``) for as long as it runs.
LOCK_FILE = ".lock"
#: Where ``--overwrite`` keeps the replaced run's files until the new run's first save is complete.
PREVIOUS_DIR = ".previous-run"
#: The replaced run's files while they move into (or back out of) ``PREVIOUS_DIR``: no new file exists then.
MOVING_DIR = ".previous-run.moving"
#: The replaced run's files once that save is complete, while they are deleted.
DISCARD_DIR = ".previous-run.discard"
#: Keys every training state holds, with their types (``model_kwargs`` etc. as written by ``train``).
STATE_KEYS: dict[str, type | tuple[type, ...]] = {
    "config": dict, "model_kwargs": dict, "num_classes": int, "model": dict, "optimizer": dict, "scheduler": dict,
    "scaler": dict, "rng": dict, "epoch": int, "step": int, "epoch_step": int, "running": dict, "history": list,
    "best_top1": (int, float)}


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
    """Write the training state atomically.

    ``torch.save`` reports a failed write (disk full, file-size limit) as a ``RuntimeError`` from its
    C++ writer, so it serialises into memory and the file is written by :func:`atomic_write_bytes`,
    whose errors are one line naming ``path``.
    """
    buffer = io.BytesIO()
    try:
        torch.save(state, buffer)
    except (RuntimeError, OSError) as exc:
        raise SqueezelabError(f"cannot write {path}: torch.save failed ({str(exc).splitlines()[0]}); "
                              f"nothing was written there") from None
    atomic_write_bytes(path, buffer.getvalue())


def load_state(path: PathLike) -> dict[str, Any]:
    """Read a training state with ``weights_only=True``; a one-line error if it is missing or unreadable."""
    path = Path(path)
    if path.is_dir():
        path = path / STATE_FILE
    if not path.is_file():
        holder = _lock_holder(path.parent)
        if holder is not None:  # a run still before its first save
            raise _in_use(path.parent, "run directory", holder)
        raise SqueezelabError(f"no training state at {path}; --resume takes a run directory written by "
                              f"'squeezelab train'")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise SqueezelabError(f"{path} is not a readable training state ({first})") from None
    _check_state(path, state)
    return state


def _check_state(path: Path, state: Any) -> None:
    """A one-line error unless ``state`` has the keys and types :func:`train` writes (a foreign ``state.pt``)."""
    def refuse(problem: str) -> SqueezelabError:
        return SqueezelabError(f"{path} is not a squeezelab training state ({problem}); --resume takes a run "
                               f"directory written by 'squeezelab train'")

    if not isinstance(state, dict):
        raise refuse(f"it holds a {type(state).__name__}, not a dict")
    for key, kind in STATE_KEYS.items():
        if key not in state:
            raise refuse(f"no {key!r}")
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            raise refuse(f"{key!r} is a {type(state[key]).__name__}")
    if not isinstance(state["config"].get("model"), str) or not isinstance(state["config"].get("epochs"), int):
        raise refuse("its config names no model or epochs")
    if not all(isinstance(v, torch.Tensor) for v in state["model"].values()):
        raise refuse("its model weights are not all tensors")
    if not all(isinstance(row, dict) for row in state["history"]):
        raise refuse("its history rows are not dicts")


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` holds a training run (its config or its state)."""
    return (path / CONFIG_FILE).is_file() or (path / STATE_FILE).is_file()


def _make_dirs(folder: Path, what: str) -> list[Path]:
    """Create ``folder`` and its missing parents; returns the folders created, innermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for created in reversed(missing):
        try:
            created.mkdir(exist_ok=True)
        except OSError as exc:
            raise SqueezelabError(f"cannot create {what} {created}: {exc.strerror or exc}") from None
    return missing


def _in_use(run_dir: Path, what: str, holder: str) -> SqueezelabError:
    """The one-line error for a run directory locked by another process (``holder``: its pid as written)."""
    by = f" (process {holder})" if holder.isdigit() else ""
    return SqueezelabError(f"{what} {run_dir} is in use by another squeezelab process{by}; wait for it to "
                           f"finish or choose another --output")


def _pid_in(lock_fd: int) -> str:
    """The pid a run wrote into its lock file (:func:`_lock`), as text; "" if it wrote none yet."""
    return os.pread(lock_fd, 32, 0).decode("ascii", "replace").strip()


def _lock_holder(run_dir: Path) -> str | None:
    """The pid written in ``RUN/.lock`` while another process holds it; ``None`` when nobody does."""
    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _pid_in(fd)
    finally:
        os.close(fd)
    return None


def _lock(lock_path: Path, run_dir: Path, what: str) -> int:
    """An open descriptor of ``lock_path`` holding an exclusive ``flock``; one line if another process holds it.

    The file may be removed and created again by a run that leaves (an empty new run removes its
    directory), so the lock counts only if the path still names the locked file.
    """
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise SqueezelabError(f"cannot lock {what} {run_dir}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _pid_in(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise SqueezelabError(f"cannot lock {what} {run_dir}: {exc.strerror or exc}") from None
            raise _in_use(run_dir, what, holder) from None
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)


@contextlib.contextmanager
def locked_run_dir(run_dir: Path, enabled: bool = True, create: bool = True, what: str = "run directory"
                   ) -> Iterator[Path]:
    """Hold an exclusive OS lock on ``run_dir`` (``fcntl.flock`` on ``RUN/.lock``) for the ``with`` block.

    A second training into the same directory gets a one-line error instead of writing beside the
    first. A new run's directory (and its missing parents) is created to hold the lock and removed
    again on the way out if nothing was saved into it; the lock file is removed on the way out. Under the lock, an ``--overwrite`` cut short
    by a kill is rolled back (:func:`recover_run_dir`) and stray temporary files are removed.
    Only the main process of a run locks (``enabled``); a missing directory is not created with
    ``create=False`` (a resumed run: reading its state reports it missing).
    """
    if not enabled or not (create or run_dir.is_dir()):
        yield run_dir
        return
    check_output(run_dir, kind="dir", what=what)
    created = _make_dirs(run_dir, what)
    lock_path = run_dir / LOCK_FILE
    try:
        fd = _lock(lock_path, run_dir, what)
        try:
            recover_run_dir(run_dir)
            yield run_dir
        finally:
            lock_path.unlink(missing_ok=True)  # a process waiting on this file sees it gone (_lock) and retries
            os.close(fd)
    finally:
        for folder in created:
            try:
                folder.rmdir()
            except OSError:  # something was saved there (or another process uses it): keep it
                break


def _restore_previous(run_dir: Path, new_files: Sequence[str]) -> None:
    """Remove ``new_files`` (a first save that did not complete) and move the replaced run's files back.

    Each step can be cut short and redone: the replaced files stay in ``PREVIOUS_DIR`` until every new
    file is gone, and in ``MOVING_DIR`` while they move back, where only they can be in the run directory.
    """
    previous, moving = run_dir / PREVIOUS_DIR, run_dir / MOVING_DIR
    for name in new_files:
        (run_dir / name).unlink(missing_ok=True)
    if previous.is_dir():
        os.replace(previous, moving)
    if moving.is_dir():
        for kept in moving.iterdir():
            os.replace(kept, run_dir / kept.name)
        moving.rmdir()


def recover_run_dir(run_dir: Path) -> None:
    """Undo what a run cut short by a kill left half-done: an unfinished ``--overwrite`` and temporary files.

    ``RUN/.previous-run`` means the new run's first save never completed: its files are removed and
    the previous run's files moved back (so does ``RUN/.previous-run.moving``, a move cut short).
    ``RUN/.previous-run.discard`` is the replaced run after a complete first save: it is deleted.
    Call it only while holding the run's lock.
    """
    _restore_previous(run_dir, RUN_FILES if (run_dir / PREVIOUS_DIR).is_dir() else ())
    shutil.rmtree(run_dir / DISCARD_DIR, ignore_errors=True)
    remove_stray_temporaries(run_dir)


class CheckpointSaver:
    """Writes a run directory: config and pruning masks with the first write, then state, checkpoints and metrics.

    Nothing is written before the first :meth:`save_state` or :meth:`save_epoch`, so a run that fails
    before then leaves no files behind. With ``overwrite`` the old run's files are moved into
    ``RUN/.previous-run`` when that first save starts and deleted only once it is complete
    (``state.pt`` written); if it fails they are moved back, so the old run stays intact and
    resumable. A resumed run keeps its ``config.json`` (only a larger ``epochs`` is written into it).
    Only the main process (``enabled``) writes.
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

    @contextlib.contextmanager
    def _saving(self) -> Iterator[None]:
        """One save. The first one also writes the config and masks, and with ``overwrite`` replaces the old
        run; if it fails, the files it wrote are removed (a new run's, or a replacing run's: the old run's
        come back), so no run directory is left holding a config without a state."""
        if self._started:
            yield
            return
        fresh = not self.config.get("resume")
        previous = self.run_dir / PREVIOUS_DIR
        replacing = fresh and self.overwrite and any((self.run_dir / name).exists() for name in RUN_FILES)
        if replacing:
            moving = self.run_dir / MOVING_DIR
            moving.mkdir()
            for name in RUN_FILES:
                if (self.run_dir / name).exists():
                    os.replace(self.run_dir / name, moving / name)
            os.replace(moving, previous)
        kept = {name for name in RUN_FILES if (self.run_dir / name).exists()}
        try:
            self._write_config()
            if self.masks is not None:
                save_masks(self.run_dir / MASKS_FILE, self.masks)
            yield
        except BaseException as exc:
            if fresh:
                _restore_previous(self.run_dir, [name for name in RUN_FILES if name not in kept])
            if replacing and isinstance(exc, SqueezelabError):
                raise SqueezelabError(f"{exc}; the run that was in {self.run_dir} is kept") from None
            raise
        self._started = True
        if replacing:
            os.replace(previous, self.run_dir / DISCARD_DIR)
            shutil.rmtree(self.run_dir / DISCARD_DIR, ignore_errors=True)

    def _write_config(self) -> None:
        """``config.json``: a new run's configuration; a resumed run's file is kept, with a larger ``epochs``."""
        path = self.run_dir / CONFIG_FILE
        config = self.config
        if self.config.get("resume") and path.is_file():
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                saved = None
            if isinstance(saved, dict):
                if saved.get("epochs") == config.get("epochs"):
                    return
                config = {**saved, "epochs": config.get("epochs")}
        atomic_write_text(path, json.dumps(config, indent=2))

    def save_state(self, state: dict[str, Any]) -> None:
        """Write ``state.pt`` (after an interruption or at the end of an epoch)."""
        if self.enabled:
            with self._saving():
                save_state(self.run_dir / STATE_FILE, state)

    def save_epoch(self, model: nn.Module, improved: bool, state: dict[str, Any],
                   history: Sequence[dict[str, Any]], summary: dict[str, Any], title: str) -> None:
        """End of an epoch: last (and best) checkpoint, state, metrics.json/csv and curves.png (skipped with one
        note without matplotlib)."""
        if not self.enabled:
            return
        with self._saving():
            save_checkpoint(self.last, model.state_dict(), self.meta)
            if improved:
                save_checkpoint(self.best, model.state_dict(), self.meta)
            save_state(self.run_dir / STATE_FILE, state)
            write_metrics(self.run_dir, history, summary)
            if available("matplotlib"):
                plot_curves(self.run_dir, history, title)
            else:
                note_missing("matplotlib", f"{self.run_dir / CURVES_FILE}")
        self.has_checkpoint = True

"""A run directory is never lost or shared: ``--overwrite`` keeps the old run until the new one has saved its
state, a kill mid-save is rolled back, and a run holds an OS lock that a second training into it meets.

Every run is squeezenet1_1 on 96 digits at 8 px, 3 steps an epoch, one thread (tests/test_train_resume.py's
recipe). The file-size limit (``ulimit -f``, RLIMIT_FSIZE with SIGXFSZ ignored, as a shell does) and the kills
run in a subprocess, so they hit the real writes: ``torch.save`` reports a failed write as a RuntimeError, and
``state.pt`` is the last file of an epoch's checkpoint to matter for ``--resume``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from squeezelab.cli.main import main as cli_main
from squeezelab.train.state import STATE_FILE, load_state, locked_run_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPE = ["--data", "digits", "--input-size", "8", "--train-limit", "96", "--val-limit", "60", "--batch-size", "32",
          "--lr", "0.02", "--threads", "1", "--no-progress"]
#: Run in a subprocess: optional resource limit and monkeypatches (a Python snippet), then the CLI.
SCRIPT = """
import os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # as the shell's 'ulimit -f': writes fail with EFBIG
limit = int(os.environ.get("FSIZE_LIMIT", "0"))
if limit:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
exec(os.environ.get("PATCH", ""))
from squeezelab.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
#: Kills the process (SIGKILL) at the first write of ``state.pt``: the new run's first save is half done.
KILL_AT_STATE = """
import squeezelab.train.state as state
def _killed(path, data):
    os.kill(os.getpid(), signal.SIGKILL)
state.save_state = _killed
"""
#: Kills the process while the old run's files move aside (after the first of them moved).
KILL_WHILE_MOVING = """
import signal as _signal
_replace = os.replace
def _replace_then_kill(src, dst):
    _replace(src, dst)
    if ".previous-run.moving" in str(dst):
        os.kill(os.getpid(), _signal.SIGKILL)
os.replace = _replace_then_kill
"""


def _cli(argv: list[str]) -> int:
    try:
        return cli_main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def _run(argv: list[str], cwd: Path, limit: int = 0, patch: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "FSIZE_LIMIT": str(limit), "PATCH": patch}
    return subprocess.run([sys.executable, "-c", SCRIPT, *argv], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env=env)


def _files(run: Path) -> dict[str, bytes | None]:
    """Every entry's bytes (a folder's: None)."""
    return {p.name: p.read_bytes() if p.is_file() else None for p in sorted(run.iterdir())}


@pytest.fixture(scope="module")
def old_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run stopped after epoch 1 of 2 (seed 3): the run an --overwrite must not lose."""
    run = tmp_path_factory.mktemp("old") / "run"
    assert _cli(["train", "squeezenet1_1", *RECIPE, "--seed", "3", "--epochs", "2", "--stop-after", "1",
                 "-o", str(run)]) == 0
    return run


def _copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    copy.mkdir()
    for name, data in _files(run).items():
        (copy / name).write_bytes(data)
    return copy


def _assert_resumable(run: Path, before: dict[str, bytes | None]) -> None:
    """The directory holds exactly the old run, and --resume finishes its second epoch."""
    assert _files(run) == before
    assert _cli(["train", "--resume", str(run), "--threads", "1", "--no-progress"]) == 0
    state = load_state(run / STATE_FILE)
    assert state["epoch"] == 2 and state["config"]["seed"] == 3
    assert (run / "config.json").read_bytes() == before["config.json"]  # a resume keeps the run's config.json
    assert sorted(p.name for p in run.iterdir()) == sorted(before)  # no lock, aside folder or temporary left


@pytest.mark.parametrize("fails_at", ["config.json", "state.pt"])
def test_overwrite_cut_by_file_size_limit_keeps_the_old_run(old_run: Path, tmp_path: Path, fails_at: str) -> None:
    """``train --overwrite`` under ``ulimit -f``: one line naming the file, and the old run intact and resumable.

    The limit is below config.json's size (the first write fails), or above the checkpoints' size but below
    state.pt's (model, AdamW moments: about three times the weights), so the checkpoints are written and the
    state write fails.
    """
    run = _copy(old_run, tmp_path)
    before = _files(run)
    limit = 64 if fails_at == "config.json" else len(before["last.safetensors"]) * 3 // 2
    assert len(before[fails_at]) > limit > (0 if fails_at == "config.json" else len(before["last.safetensors"]))
    proc = _run(["train", "squeezenet1_1", *RECIPE, "--seed", "4", "--epochs", "1", "--overwrite", "-o", str(run)],
                tmp_path, limit=limit)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"cannot write {run / fails_at}: File too large" in lines[0] and "is kept" in lines[0], lines[0]
    _assert_resumable(run, before)


@pytest.mark.parametrize("patch", [KILL_AT_STATE, KILL_WHILE_MOVING], ids=["killed-at-state", "killed-while-moving"])
def test_overwrite_killed_mid_save_is_rolled_back(old_run: Path, tmp_path: Path, patch: str) -> None:
    """SIGKILL half-way through the overwriting run's first save: the next run into the directory (here the
    resume) takes the lock, finds the old run's files aside, removes the new ones and moves the old ones back."""
    run = _copy(old_run, tmp_path)
    before = _files(run)
    proc = _run(["train", "squeezenet1_1", *RECIPE, "--seed", "4", "--epochs", "1", "--overwrite", "-o", str(run)],
                tmp_path, patch=patch)
    assert proc.returncode == -9, proc.stderr
    assert _files(run) != before  # the kill left the directory half-way
    if patch is KILL_AT_STATE:
        assert (run / ".previous-run" / STATE_FILE).is_file() and (run / "last.safetensors").is_file()
    else:
        assert (run / ".previous-run.moving").is_dir()
    assert (run / ".lock").is_file()  # the killed process could not remove its lock file; the kernel freed the lock
    with locked_run_dir(run):  # what the next training into the directory does first
        pass
    _assert_resumable(run, before)


def test_completed_overwrite_replaces_the_old_run(old_run: Path, tmp_path: Path) -> None:
    run = _copy(old_run, tmp_path)
    assert _cli(["train", "squeezenet1_1", *RECIPE, "--seed", "4", "--epochs", "1", "--overwrite", "-o",
                 str(run)]) == 0
    assert load_state(run)["config"]["seed"] == 4 and json.loads((run / "config.json").read_text())["seed"] == 4
    assert not any(p.name.startswith(".") for p in run.iterdir())


def test_a_first_save_that_fails_leaves_no_half_run(tmp_path: Path) -> None:
    """A new run whose first save fails leaves no config without a state (which neither a rerun nor --resume
    could use): the directory it created is gone."""
    run = tmp_path / "new" / "run"
    proc = _run(["train", "squeezenet1_1", *RECIPE, "--epochs", "1", "-o", str(run)], tmp_path, limit=4096)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "File too large" in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_second_training_into_a_locked_run_directory_is_refused(tmp_path: Path, capsys) -> None:
    """While a training runs, a second one into the same -o (new or --resume) is a one-line error, exit 2."""
    from squeezelab.train import TrainConfig, train

    run = tmp_path / "run"
    seen: list[tuple[int, str]] = []

    def second_training(model) -> None:
        if not seen:
            for argv in (["train", "squeezenet1_1", *RECIPE, "--epochs", "1", "-o", str(run)],
                         ["train", "squeezenet1_1", *RECIPE, "--epochs", "1", "--overwrite", "-o", str(run)],
                         ["train", "--resume", str(run)]):
                seen.append((_cli(argv), capsys.readouterr().err))

    result = train(TrainConfig("squeezenet1_1", data="digits", input_size=8, train_limit=96, val_limit=60,
                               batch_size=32, epochs=1, threads=1, progress=False, output=str(run),
                               after_step=second_training))
    assert result.history and len(seen) == 3
    for code, err in seen:
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"run directory {run} is in use by another squeezelab process (process {os.getpid()})" in err, err
    assert not (run / ".lock").exists()
    assert _cli(["train", "--resume", str(run), "--epochs", "2", "--threads", "1", "--no-progress"]) == 0


def test_stray_temporary_files_are_removed_under_the_lock(old_run: Path, tmp_path: Path) -> None:
    """A write killed before its rename leaves ``.NAME.XXXXXXXX.tmp``; the next run into the directory removes it
    (and nothing else)."""
    run = _copy(old_run, tmp_path)
    (run / ".state.pt.abcd1234.tmp").write_bytes(b"half")
    (run / "notes.tmp").write_text("mine")
    assert _cli(["train", "--resume", str(run), "--threads", "1", "--no-progress"]) == 0
    assert not (run / ".state.pt.abcd1234.tmp").exists() and (run / "notes.tmp").read_text() == "mine"

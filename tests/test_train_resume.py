"""Resume, --stop-after and run directories through the CLI: a resumed run is the run it continues, bit for bit.

Every run is squeezenet1_1 on 96 digits at 8 px, 3 steps an epoch, one thread: a few seconds each.
The recipe is deliberately not the default one (poly schedule, lr 0.02, 3 epochs, seed 3), so a
resume that fell back to a default would change the numbers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from _train_helpers import stop_at
from squeezelab.cli.main import main as cli_main
from squeezelab.compress.prune import magnitude_masks, save_masks
from squeezelab.errors import SqueezelabError
from squeezelab.models import create_model
from squeezelab.train import TrainConfig, engine, train
from squeezelab.train.resume import resume_config
from squeezelab.weights.checkpoint import CheckpointMeta, read_checkpoint, save_checkpoint

RECIPE = dict(data="digits", input_size=8, train_limit=96, val_limit=60, batch_size=32, epochs=3, lr=0.02,
              schedule="poly", warmup_epochs=0.5, seed=3)
CLI_RECIPE = ["--data", "digits", "--input-size", "8", "--train-limit", "96", "--val-limit", "60", "--batch-size",
              "32", "--epochs", "3", "--lr", "0.02", "--schedule", "poly", "--warmup-epochs", "0.5", "--seed", "3"]
RUNTIME = ["--threads", "1", "--no-progress"]
METRIC_KEYS = ("epoch", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr")



def _snapshot(run: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(run.iterdir())}


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)[0]


def _assert_same_run(a: Path, b: Path) -> None:
    """Bit-identical last and best weights and identical per-epoch metrics (timings aside)."""
    for name in ("last.safetensors", "best.safetensors"):
        wa, wb = _weights(a / name), _weights(b / name)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), name
    rows_a = json.loads((a / "metrics.json").read_text())["epochs"]
    rows_b = json.loads((b / "metrics.json").read_text())["epochs"]
    assert [[r[k] for k in METRIC_KEYS] for r in rows_a] == [[r[k] for k in METRIC_KEYS] for r in rows_b]


def _cli(argv: list[str]) -> int:
    """The CLI's exit status, for usage errors (argparse's SystemExit) too."""
    try:
        return cli_main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def _one_line_error(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("squeezelab") and "error:" in err and len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert all(w in err for w in words), err
    return err


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted 3-epoch run, trained once through the CLI."""
    out = tmp_path_factory.mktemp("full") / "run"
    assert _cli(["train", "squeezenet1_1", *CLI_RECIPE, *RUNTIME, "-o", str(out)]) == 0
    return out


def test_interrupted_run_resumed_with_no_flags_is_bit_identical(full_run: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    cut = tmp_path / "cut"
    partial = train(TrainConfig("squeezenet1_1", **RECIPE, threads=1, progress=False, output=str(cut),
                                after_step=stop_at(4)))  # epoch 2, step 1 of 3
    assert partial.interrupted and len(partial.history) == 1
    assert torch.load(cut / "state.pt", weights_only=True)["epoch_step"] == 1
    capsys.readouterr()
    assert _cli(["train", "--resume", str(cut)]) == 0  # no model, no recipe, no runtime flags
    assert "resumed from" in capsys.readouterr().out
    _assert_same_run(full_run, cut)


def test_stop_after_then_resume_is_the_same_run(full_run: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert _cli(["train", "squeezenet1_1", *CLI_RECIPE, *RUNTIME, "--stop-after", "1", "-o", str(run)]) == 0
    assert "stopped after epoch 1 of 3" in capsys.readouterr().out
    assert torch.load(run / "state.pt", weights_only=True)["epoch"] == 1
    assert json.loads((run / "config.json").read_text())["epochs"] == 3  # the plan, not the stop
    assert _cli(["train", "--resume", str(run), "--stop-after", "2", *RUNTIME]) == 0
    assert len(json.loads((run / "metrics.json").read_text())["epochs"]) == 2
    before = _snapshot(run)
    assert _cli(["train", "--resume", str(run), "--stop-after", "2"]) == 0  # already there: a no-op
    assert "nothing to do" in capsys.readouterr().out and _snapshot(run) == before
    assert _cli(["train", "--resume", str(run)]) == 0
    _assert_same_run(full_run, run)


def test_resuming_a_finished_run_changes_nothing(full_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _snapshot(full_run)
    capsys.readouterr()
    assert _cli(["train", "--resume", str(full_run)]) == 0
    out = capsys.readouterr().out
    assert "is finished (3/3 epochs): nothing to do" in out and "--epochs" in out
    assert _cli(["train", "squeezenet1_1", "--resume", str(full_run), "--lr", "0.02"]) == 0  # same values: fine
    assert _snapshot(full_run) == before


@pytest.mark.parametrize("flags, words", [
    (["--lr", "0.5"], ("--lr 0.5", "0.02", "drop the flag")),
    (["--epochs", "2"], ("--epochs 2", "a larger --epochs extends it")),
    (["--schedule", "cosine"], ("--schedule 'cosine'", "'poly'")),
    (["--data", "fashion-mnist"], ("--data",)),
    (["--no-augment"], ("--augment False",)),
    (["--prune-masks", "m.safetensors"], ("--prune-masks",)),
    (["--output", "elsewhere"], ("--output", "drop --output")),
    (["--overwrite"], ("--resume", "--overwrite")),
])
def test_conflicting_flag_on_resume_is_an_error(full_run: Path, flags: list[str], words: tuple[str, ...],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    before = _snapshot(full_run)
    assert _cli(["train", "--resume", str(full_run), *flags]) == 2
    _one_line_error(capsys, *words)
    assert _snapshot(full_run) == before


def test_resume_with_another_model_is_an_error(full_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(["train", "sqnxt23_w1", "--resume", str(full_run)]) == 2
    _one_line_error(capsys, "the model 'sqnxt23_w1'", "'squeezenet1_1'")


def test_larger_epochs_on_resume_extends_the_run_and_says_so(full_run: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "extended"
    shutil.copytree(full_run, run)
    capsys.readouterr()
    assert _cli(["train", "--resume", str(run), "--epochs", "4", *RUNTIME]) == 0
    out = capsys.readouterr().out
    assert "--epochs 4 extends the run planned for 3 epochs: a new poly schedule from epoch 4" in out
    rows = json.loads((run / "metrics.json").read_text())["epochs"]
    full_rows = json.loads((full_run / "metrics.json").read_text())["epochs"]
    assert len(rows) == 4 and rows[:3] == full_rows
    assert json.loads((run / "config.json").read_text())["epochs"] == 4
    assert torch.load(run / "state.pt", weights_only=True)["config"]["epochs"] == 4


def test_prune_masks_survive_resume(tmp_path: Path) -> None:
    model = create_model("squeezenet1_1", num_classes=10, in_chans=1, small_input=True)
    masks = magnitude_masks(model.state_dict(), density=0.5)
    masks_file = tmp_path / "masks.safetensors"
    save_masks(masks_file, masks)
    config = TrainConfig("squeezenet1_1", **{**RECIPE, "epochs": 2}, threads=1, progress=False,
                         prune_masks=str(masks_file))
    full = train(config, output=str(tmp_path / "full"))
    cut = tmp_path / "cut"
    assert train(config, output=str(cut), after_step=stop_at(4)).interrupted
    assert (cut / "prune_masks.safetensors").is_file()
    masks_file.unlink()  # the run keeps its own copy
    assert _cli(["train", "--resume", str(cut), *RUNTIME]) == 0
    resumed = _weights(cut / "last.safetensors")
    for name, mask in masks.items():
        assert (resumed[name][~mask] == 0).all(), f"{name}: a pruned weight came back after the resume"
        assert (resumed[name][mask] != 0).any(), name
    _assert_same_run(full.run_dir, cut)


def test_existing_run_directory_needs_resume_or_overwrite(full_run: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    before = _snapshot(full_run)
    assert _cli(["train", "sqnxt23_w1", *CLI_RECIPE, *RUNTIME, "-o", str(full_run)]) == 2
    _one_line_error(capsys, "holds a training run already", "--resume", "--overwrite")
    assert _snapshot(full_run) == before
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    (run / "notes.txt").write_text("mine")
    assert _cli(["train", "squeezenet1_1", *CLI_RECIPE, *RUNTIME, "--epochs", "1", "--overwrite",
                     "-o", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["epochs"] == 1
    assert len(json.loads((run / "metrics.json").read_text())["epochs"]) == 1
    assert (run / "notes.txt").read_text() == "mine"  # only the run's own files are replaced


@pytest.mark.parametrize("flags, words", [
    (["--input-size", "2048", "--batch-size", "65536"], ("--input-size 2048", "GiB", "lower --input-size")),
    (["--input-size", "8", "--model-kwargs", '{"small_input": false}'], ("below this model's minimum",)),
    (["--input-size", "0"], ("--input-size",)),
    (["--input-size", "100000"], ("--input-size",)),
    (["--stop-after", "0"], ("--stop-after",)),
    (["--grad-clip", "-1"], ("--grad-clip",)),
    (["--epochs", "nan"], ("--epochs",)),
    (["--data", "no-such-folder"], ("no-such-folder",)),
])
def test_bad_input_leaves_no_run_directory(tmp_path: Path, flags: list[str], words: tuple[str, ...],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert _cli(["train", "squeezenet1_1", "--data", "digits", *RUNTIME, *flags, "-o", str(out)]) == 2
    _one_line_error(capsys, *words)
    assert not out.exists()


@pytest.mark.parametrize("data, words", [
    ("fashion-mnist", ("fashion-mnist validates on its 10,000 test images",)),
    ("cifar10:{tmp}", ("cifar10_test_jpeg.zip",)),
    ("{tmp}", ("val",)),  # a folder with train/ and val/
])
def test_val_fraction_on_data_with_its_own_split_is_an_error(tmp_path: Path, data: str, words: tuple[str, ...],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The run would validate on the data's own split, not on held-out training images: no silent no-op."""
    for split in ("train", "val"):
        for name in ("a", "b"):
            (tmp_path / split / name).mkdir(parents=True)
    out = tmp_path / "run"
    assert _cli(["train", "squeezenet1_1", "--data", data.format(tmp=tmp_path), "--val-fraction", "0.1", *RUNTIME,
                 "-o", str(out)]) == 2
    _one_line_error(capsys, "--val-fraction", "drop --val-fraction", *words)
    assert not out.exists()


def test_no_model_and_no_resume_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(["train", "--epochs", "1"]) == 2
    _one_line_error(capsys, "give a model name")


def test_fine_tune_resumes_without_its_pretrained_file(tmp_path: Path) -> None:
    source = create_model("squeezenet1_1", num_classes=3, in_chans=1, small_input=True)
    ckpt = tmp_path / "three.safetensors"
    save_checkpoint(ckpt, source.state_dict(), CheckpointMeta("squeezenet1_1", 3, 1, {"small_input": True}))
    config = TrainConfig("squeezenet1_1", **{**RECIPE, "epochs": 2}, threads=1, progress=False, pretrained=str(ckpt))
    full = train(config, output=str(tmp_path / "full"))
    cut = tmp_path / "cut"
    assert train(config, output=str(cut), after_step=stop_at(4)).interrupted
    ckpt.unlink()  # the run's state holds the weights; --pretrained is not read again
    assert _cli(["train", "--resume", str(cut)]) == 0
    _assert_same_run(full.run_dir, cut)


def test_run_saved_before_the_optimizer_option_resumes_with_sgd(full_run: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A run whose saved configuration has no ``optimizer`` (made when SGD was the only one) resumes
    with SGD, not with today's ``auto`` (AdamW for SqueezeNet): it stays the run it was."""
    stopped = tmp_path / "stopped"
    assert _cli(["train", "squeezenet1_1", *CLI_RECIPE, *RUNTIME, "-o", str(stopped), "--optimizer", "sgd",
                 "--stop-after", "1"]) == 0
    state = torch.load(stopped / "state.pt", weights_only=True)
    del state["config"]["optimizer"]
    torch.save(state, stopped / "state.pt")
    capsys.readouterr()
    assert _cli(["train", "--resume", str(stopped), *RUNTIME]) == 0
    assert "SGD lr 0.02" in capsys.readouterr().out
    saved = torch.load(stopped / "state.pt", weights_only=True)
    assert saved["config"]["optimizer"] == "sgd" and "momentum_buffer" in str(saved["optimizer"]["state"])


def test_another_path_to_the_same_kind_of_data_is_left_to_the_fingerprint(tmp_path: Path) -> None:
    """``--data`` on resume may name the run's data by another path (a moved folder): it is taken, and training
    compares the data fingerprints (tests/test_data_fingerprint.py); another kind of source is a conflict."""
    saved = TrainConfig("squeezenet1_1", data=f"cifar10:{tmp_path / 'data'}").to_dict()
    cfg, _ = resume_config(TrainConfig("squeezenet1_1", data="cifar10:../moved"), saved, {"data"})
    assert cfg.data == "cifar10:../moved"
    assert resume_config(TrainConfig("squeezenet1_1"), saved, set())[0].data == saved["data"]
    with pytest.raises(SqueezelabError, match=r"--data 'fashion-mnist' conflicts"):
        resume_config(TrainConfig("squeezenet1_1", data="fashion-mnist"), saved, {"data"})


def test_a_run_resumes_at_its_own_rate_after_the_default_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """``lr=None`` names the rule ``default_lr``; a run started under one default rate and resumed after the
    default changed (a squeezelab upgrade) continues at the rate it started with, bit for bit."""
    recipe = {**RECIPE, "lr": None, "optimizer": "adamw"}
    monkeypatch.setattr(engine, "ADAMW_SOLVER", (0.004, 64))  # 0.004 x sqrt(32/64) at batch 32
    full = train(TrainConfig("squeezenet1_1", **recipe, threads=1, progress=False, output=str(tmp_path / "full")))
    cut = tmp_path / "cut"
    assert train(TrainConfig("squeezenet1_1", **recipe, threads=1, progress=False, output=str(cut),
                             after_step=stop_at(4))).interrupted
    monkeypatch.undo()
    capsys.readouterr()
    assert _cli(["train", "--resume", str(cut)]) == 0
    assert f"AdamW lr {0.004 * 0.5 ** 0.5:g} " in capsys.readouterr().out
    _assert_same_run(full.run_dir, cut)

"""Prune, then retrain with the masks kept: the Deep Compression loop through the CLI."""

from __future__ import annotations

from pathlib import Path

from squeezelab.cli import main
from squeezelab.compress.prune import load_masks
from squeezelab.weights import read_checkpoint

TINY = ["--data", "digits", "--input-size", "8", "--epochs", "1", "--train-limit", "256", "--val-limit", "64",
        "--batch-size", "32", "--lr", "0.01", "--no-progress", "--threads", "1"]


def test_retraining_keeps_pruned_weights_at_zero(tmp_path: Path) -> None:
    dense_run, retrain_run = tmp_path / "dense", tmp_path / "retrain"
    masks_file = tmp_path / "masks.safetensors"
    assert main(["train", "squeezenet1_1", *TINY, "-o", str(dense_run)]) == 0
    dense = dense_run / "best.safetensors"
    assert main(["compress", "squeezenet1_1", "--weights", str(dense), "--bits", "8", "--density", "0.5",
                 "--save-masks", str(masks_file), "-o", str(tmp_path / "model.sqz")]) == 0
    masks = load_masks(masks_file)
    assert main(["train", "squeezenet1_1", *TINY, "--pretrained", str(dense), "--prune-masks", str(masks_file),
                 "-o", str(retrain_run)]) == 0

    dense_state, _ = read_checkpoint(dense)
    retrained, _ = read_checkpoint(retrain_run / "last.safetensors")
    kept = total = 0
    for name, mask in masks.items():
        weight = retrained[name]
        assert (weight[mask == 0] == 0).all(), f"{name}: a pruned weight came back during retraining"
        assert not (dense_state[name][mask == 0] == 0).all(), f"{name}: the dense model had these zeros already"
        kept += int(mask.sum())
        total += mask.numel()
    assert 0.45 < kept / total < 0.55

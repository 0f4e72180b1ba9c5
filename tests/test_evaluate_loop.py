"""The one top-k loop (squeezelab.evaluation.evaluate_model), shared by train, eval and compress."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from squeezelab.data import SKIPPED_LABEL
from squeezelab.evaluation import evaluate_model


def _logits_model(images: torch.Tensor) -> torch.Tensor:
    """The 'image' is its own logits: a plain callable, not an nn.Module."""
    return images


def test_counts_top1_top5_loss_and_per_class_exactly() -> None:
    logits = torch.full((4, 6), -10.0)
    logits[0, 2] = 10.0                   # label 2: top-1 hit
    logits[1, :] = torch.arange(6.0)      # label 0 is ranked last (6th): miss for top-1 and top-5
    logits[2, 5], logits[2, 1] = 10.0, 9.0  # label 1: second, a top-5 hit only
    labels = torch.tensor([2, 0, 1, SKIPPED_LABEL])
    batches = [(logits[:2], labels[:2]), (logits[2:], labels[2:])]
    result = evaluate_model(_logits_model, batches)
    assert (result.count, result.skipped, result.correct_top1, result.correct_top5) == (3, 1, 1, 2)
    assert result.top1 == 100.0 / 3 and result.top5 == 200.0 / 3
    expected = torch.nn.functional.cross_entropy(logits[:3], labels[:3]).item()
    assert math.isclose(result.loss, expected, rel_tol=1e-6)
    assert result.per_class == {0: (1, 0), 1: (1, 0), 2: (1, 1)}


def test_dataset_and_batches_agree_and_training_mode_is_restored() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.Dropout(0.5))
    images, labels = torch.randn(50, 3, 2, 2), torch.randint(0, 7, (50,))
    from_dataset = evaluate_model(model, TensorDataset(images, labels), batch_size=16)
    from_batches = evaluate_model(model, [(images[i:i + 7], labels[i:i + 7]) for i in range(0, 50, 7)])
    assert model.training  # evaluated in eval mode (dropout off), then put back
    assert (from_dataset.correct_top1, from_dataset.correct_top5, from_dataset.per_class) == \
        (from_batches.correct_top1, from_batches.correct_top5, from_batches.per_class)
    assert math.isclose(from_dataset.loss, from_batches.loss, rel_tol=1e-6) and from_dataset.count == 50


def test_flip_tta_scores_the_mean_logits_of_each_image_and_its_mirror() -> None:
    """Reference: the two forward passes written out by hand, scored with torch's own cross-entropy."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 3 * 4, 5))
    images, labels = torch.randn(40, 3, 5, 6), torch.randint(0, 5, (40,))
    result = evaluate_model(model, TensorDataset(images, labels), batch_size=16, tta="flip")
    with torch.no_grad():
        mean = (model(images) + model(torch.flip(images, dims=[3]))) / 2
    assert result.correct_top1 == int((mean.argmax(1) == labels).sum())
    assert math.isclose(result.loss, nn.functional.cross_entropy(mean, labels).item(), rel_tol=1e-5)
    plain = evaluate_model(model, TensorDataset(images, labels), batch_size=16)
    assert not math.isclose(plain.loss, result.loss, rel_tol=1e-3)  # the mirror images were scored too


def test_unknown_tta_is_refused() -> None:
    with pytest.raises(ValueError, match="tta must be one of"):
        evaluate_model(_logits_model, [], tta="rotate")


def test_a_second_ctrl_c_during_evaluation_ends_the_process() -> None:
    """The first SIGINT raises KeyboardInterrupt; a second, while the first is handled (workers shutting down),
    kills the process instead of being ignored; the handler is restored afterwards."""
    import os
    import signal
    import subprocess
    import sys

    from squeezelab.inference.evaluate import second_interrupt_ends_process

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with second_interrupt_ends_process():
            os.kill(os.getpid(), signal.SIGINT)
            signal.pthread_sigmask(signal.SIG_BLOCK, [])  # a bytecode boundary for the handler to run
    assert signal.getsignal(signal.SIGINT) is before
    script = ("import os, signal\nfrom squeezelab.inference.evaluate import second_interrupt_ends_process\n"
              "with second_interrupt_ends_process():\n"
              "    try:\n        os.kill(os.getpid(), signal.SIGINT)\n        signal.pthread_sigmask(signal.SIG_BLOCK, [])\n"
              "    except KeyboardInterrupt:\n        print('first', flush=True)\n"
              "        os.kill(os.getpid(), signal.SIGINT)\n        print('survived', flush=True)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGINT and proc.stdout == "first\n", (proc.returncode, proc.stdout, proc.stderr)

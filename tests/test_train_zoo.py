"""Every zoo model trains from scratch with the default recipe, small inputs included.

One epoch per model (all of digits' training split, 16 px or the model's smallest
input, everything else default) must keep every loss finite, end with a
validation loss below 3 x ln(10) (issue 15: no epoch-1 blow-up; before the
recipe's BN warmup and recomputed BN statistics SqueezeNext reached 1e7 here),
give every parameter tensor a nonzero gradient (no dead or detached layer, no
classifier stalled behind a dead ReLU) and write a checkpoint that evaluates.
The accuracy of full default runs is measured by ``benchmarks/zoo_from_scratch.py``
(docs/training.md) and asserted for one model per family in ``test_train.py``.
Budget: about 2 minutes on 2 cores.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from squeezelab.models import list_models
from squeezelab.train import TrainConfig, train
from squeezelab.weights import build_model

SIZES = {"textbook_squeezenet": 32}  # no small-input stem: its smallest input is 29 px


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_model_learns_from_scratch_with_the_default_recipe(name: str, tmp_path: Path) -> None:
    reached: set[str] = set()
    names: list[str] = []

    def record_gradients(model: nn.Module) -> None:
        names[:] = [n for n, p in model.named_parameters() if p.requires_grad]
        reached.update(n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0)

    result = train(TrainConfig(name, data="digits", input_size=SIZES.get(name, 16), epochs=1, threads=1,
                               progress=False, output=str(tmp_path), after_step=record_gradients))
    (epoch1,) = result.history
    assert math.isfinite(epoch1["train_loss"])
    assert epoch1["val_loss"] < 3 * math.log(10), epoch1
    assert set(names) - reached == set(), "parameters that never got a gradient"
    model = build_model(result.best_checkpoint)
    meta = model.pretrained_cfg
    size = SIZES.get(name, 16)
    assert meta.preprocess.crop == size and meta.num_classes == 10
    with torch.no_grad():
        assert torch.isfinite(model.eval()(torch.rand(2, meta.in_chans, size, size))).all()

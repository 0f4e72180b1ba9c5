"""The fast recipe's parts: batched augmentation, derandomised flips, Cutout, the weight average, evaluation every
k epochs, the cheaper dropout mask, flip-and-translate TTA, the whitened stem, and exact resume with all of them on.

Oracles: torchvision's functional pad / crop / hflip for the batched augmentation, the per-sample
``Preprocess`` path for decoding and normalising, the closed-form exponential average for the EMA,
hand-shifted batches for the test-time augmentation, numpy's eigenvalues of hand-sliced patches for the
whitening, and an uninterrupted run for resume.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import functional as TF

from _train_helpers import stop_at
from squeezelab.data import build_datasets
from squeezelab.data.batched import BatchedAugment, BatchedEpoch, DecodedImages, Normalizer
from squeezelab.evaluation import tta_logits
from squeezelab.errors import SqueezelabError
from squeezelab.models import create_model
from squeezelab.models._base import Dropout
from squeezelab.train import TrainConfig, train
from squeezelab.train.config import RECIPES
from squeezelab.train.averaging import WeightAverage
from squeezelab.train.whitening import first_convolution, patch_whitening_filters, whiten_first_convolution
from squeezelab.weights.checkpoint import read_checkpoint

FAST_DIGITS = dict(model="sqnxt23_w1", data="digits", input_size=16, train_limit=200, val_limit=100, epochs=3,
                   recipe="fast", batch_size=64, ema_decay=0.99, cutout=4, whiten_stem=True, threads=1, progress=False)


@pytest.fixture(scope="module")
def digits16():
    return build_datasets("digits", 16, in_chans=3)


def test_decoded_images_normalise_like_the_per_sample_path(digits16) -> None:
    """Decoding once and normalising a batch gives the tensors the per-sample path gives (no augmentation)."""
    plain = build_datasets("digits", 16, in_chans=3, augment=False).train
    decoded = DecodedImages.from_dataset(plain, 16, 3)
    normalize = Normalizer(digits16.preprocess)
    batch = normalize(decoded.pixels[:20])
    expected = torch.stack([plain[i][0] for i in range(20)])
    torch.testing.assert_close(batch, expected, rtol=0, atol=1e-6)
    assert decoded.labels[:20].tolist() == [plain[i][1] for i in range(20)]


def test_batched_augment_is_pad_crop_flip(digits16) -> None:
    """Each augmented image equals torchvision's pad(4 px of zeros) + crop at the plan's offset (+ hflip)."""
    decoded = DecodedImages.from_dataset(digits16.train, 16, 3)
    augment = BatchedAugment(16, flip="random")
    plan = augment.plan(len(decoded), seed=5, epoch=2)
    indices = torch.arange(40, 72)
    out = augment.apply(decoded.pixels[indices], plan, indices)
    pad = augment.padding
    assert pad == 2
    for row, index in enumerate(indices.tolist()):
        top, left = plan.offsets[index].tolist()
        expected = TF.crop(TF.pad(decoded.pixels[index], [pad] * 4, fill=0), top, left, 16, 16)
        if plan.flips[index]:
            expected = TF.hflip(expected)
        assert torch.equal(out[row], expected), index
    assert 0.3 < plan.flips.float().mean() < 0.7
    assert set(plan.offsets.flatten().tolist()) == set(range(2 * pad + 1))


def test_plans_depend_only_on_seed_and_epoch() -> None:
    augment = BatchedAugment(32, flip="random", cutout=8)
    a, b, c = augment.plan(500, 1, 3), augment.plan(500, 1, 3), augment.plan(500, 1, 4)
    assert torch.equal(a.offsets, b.offsets) and torch.equal(a.flips, b.flips)
    assert torch.equal(a.cutout_centres, b.cutout_centres)
    assert not torch.equal(a.offsets, c.offsets)


def test_derandomized_flips_alternate_every_epoch() -> None:
    """Jordan (2024) section 3.6: a random half flipped in epoch 0, then every image the other way each epoch."""
    augment = BatchedAugment(32, flip="derandomized")
    flips = torch.stack([augment.plan(10_000, 7, epoch).flips for epoch in range(4)])
    assert 0.47 < flips[0].float().mean() < 0.53
    assert torch.all(flips[1] == ~flips[0]) and torch.all(flips[2] == flips[0]) and torch.all(flips[3] == ~flips[0])
    other_seed = augment.plan(10_000, 8, 0).flips
    assert 0.4 < (other_seed == flips[0]).float().mean() < 0.6


def test_cutout_fills_the_clipped_square_with_the_mean_colour() -> None:
    fill = torch.tensor([10, 20, 30], dtype=torch.uint8)
    augment = BatchedAugment(16, translate=False, flip="none", cutout=6, fill=fill)
    pixels = torch.full((64, 3, 16, 16), 200, dtype=torch.uint8)
    indices = torch.arange(64)
    plan = augment.plan(64, 0, 0)
    out = augment.apply(pixels, plan, indices)
    for i in range(64):
        cy, cx = plan.cutout_centres[i].tolist()
        rows = len(range(max(cy - 3, 0), min(cy + 3, 16)))
        cols = len(range(max(cx - 3, 0), min(cx + 3, 16)))
        filled = (out[i] != 200).all(dim=0)
        assert int(filled.sum()) == rows * cols, i
        assert torch.equal(out[i][:, filled], fill[:, None].expand(3, rows * cols))


def test_batched_epoch_skips_the_batches_already_done(digits16) -> None:
    decoded = DecodedImages.from_dataset(digits16.train, 16, 3)
    normalize, augment = Normalizer(digits16.preprocess), BatchedAugment(16)
    order = torch.randperm(len(decoded), generator=torch.Generator().manual_seed(0)).tolist()
    plan = augment.plan(len(decoded), 0, 0)
    full = list(BatchedEpoch(decoded, order, 50, normalize, augment=augment, plan=plan, channels_last=True))
    tail = list(BatchedEpoch(decoded, order, 50, normalize, augment=augment, plan=plan, channels_last=True, start=3))
    assert len(tail) == len(full) - 3
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(full[3:], tail))
    assert full[0][0].is_contiguous(memory_format=torch.channels_last)


def test_weight_ema_is_the_warmed_up_exponential_average() -> None:
    """After updates with weights w_1..w_n the average is the closed-form recursion with decay min(d, (1+t)/(10+t))."""
    model = nn.Linear(3, 2)
    ema = WeightAverage(model, decay=0.9)
    expected = model.weight.detach().clone()
    for t in range(25):
        with torch.no_grad():
            model.weight.add_(torch.randn_like(model.weight))
        decay = min(0.9, (1 + t) / (10 + t))
        expected = decay * expected + (1 - decay) * model.weight.detach()
        ema.update(model)
    torch.testing.assert_close(ema.module.weight, expected)
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_swa_average_is_torchs_averaged_model() -> None:
    """``decay=None`` is the uniform mean of every update, as torch.optim.swa_utils.AveragedModel computes it."""
    model = nn.Linear(3, 2)
    swa, reference = WeightAverage(model, decay=None), torch.optim.swa_utils.AveragedModel(model)
    for _ in range(25):
        with torch.no_grad():
            model.weight.add_(torch.randn_like(model.weight))
        swa.update(model)
        reference.update_parameters(model)
    torch.testing.assert_close(swa.module.weight, reference.module.weight)
    torch.testing.assert_close(swa.module.bias, reference.module.bias)


def test_swa_and_ema_together_are_refused() -> None:
    with pytest.raises(SqueezelabError, match="--swa and --ema-decay both average"):
        train(TrainConfig("sqnxt23_w1", swa=True, ema_decay=0.99, epochs=1, progress=False))


def _correlated_images() -> torch.Tensor:
    """(40, 3, 18, 18) images whose neighbouring pixels and channels are correlated, as a photo's are."""
    images = F.avg_pool2d(torch.randn(40, 3, 20, 20, generator=torch.Generator().manual_seed(0)), 3, 1)
    images[:, 1] += 0.5 * images[:, 0]
    return images


def test_whitening_filters_whiten_the_patches() -> None:
    """With eps 0 the first half of the filters maps every 3x3 patch to 27 features with identity second moments,
    the direction of most energy first: filter i's norm is 1/sqrt(eigenvalue i) of the patches' second-moment
    matrix, here computed by numpy from patches sliced by hand. The second half is the first negated."""
    images = _correlated_images()
    filters = patch_whitening_filters(images, nn.Conv2d(3, 64, 3), eps=0.0)
    assert filters.shape == (54, 3, 3, 3)
    torch.testing.assert_close(filters[27:], -filters[:27])
    patches = np.stack([images[n, :, i:i + 3, j:j + 3].numpy().ravel()
                        for n in range(len(images)) for i in range(16) for j in range(16)]).astype(np.float64)
    eigenvalues = np.linalg.eigvalsh(patches.T @ patches / len(patches))[::-1]
    norms = filters[:27].flatten(1).double().norm(dim=1).numpy()
    np.testing.assert_allclose(1.0 / norms ** 2, eigenvalues, rtol=1e-4)
    features = F.conv2d(images.double(), filters[:27].double()).permute(0, 2, 3, 1).reshape(-1, 27)
    torch.testing.assert_close(features.T @ features / len(features), torch.eye(27, dtype=torch.float64),
                               atol=1e-4, rtol=0)


def test_whitening_replaces_only_the_stems_leading_filters() -> None:
    """sqnxt23v5_w1's small-input stem (3x3, 64 filters) gets 54 whitening filters (27 directions, both signs) and
    keeps its other 10 filters and every other layer as initialised."""
    model = create_model("sqnxt23v5_w1", num_classes=10, small_input=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    note = whiten_first_convolution(model, _correlated_images())
    stem = first_convolution(model)
    assert stem is model.features.stem.conv and "54 of its 64 filters" in note
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed == ["features.stem.conv.weight"]
    torch.testing.assert_close(stem.weight[:54], patch_whitening_filters(_correlated_images(), stem))
    assert torch.equal(stem.weight[54:], before["features.stem.conv.weight"][54:])


def test_whiten_stem_is_refused_with_pretrained_weights() -> None:
    with pytest.raises(SqueezelabError, match="--whiten-stem initialises the stem"):
        train(TrainConfig("sqnxt23_w1", whiten_stem=True, pretrained="sqnxt23v5_w1.cifar10", epochs=1,
                          progress=False))


def test_dropout_keeps_half_and_doubles_them() -> None:
    """SqueezeNet's drop9 (p=0.5): about half the elements zeroed, the rest doubled, the mean kept; the gradient
    flows through the kept elements only; eval mode is the identity."""
    torch.manual_seed(0)
    layer = Dropout(0.5).train()
    x = torch.ones(200_000, requires_grad=True)
    y = layer(x)
    kept = y != 0
    assert set(y.unique().tolist()) == {0.0, 2.0}
    assert abs(kept.float().mean().item() - 0.5) < 0.01
    y.sum().backward()
    assert torch.equal(x.grad, kept.float() * 2)
    layer.eval()
    assert torch.equal(layer(x), x)
    assert abs(Dropout(0.1).train()(torch.ones(200_000)).mean().item() - 1.0) < 0.01


def test_flip_translate_tta_weights_six_views() -> None:
    """Half the flip-averaged logits of the image, a quarter each of its 1-px diagonal shifts (reflect padding)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(5))
    images = torch.randn(6, 3, 8, 8)
    net(images)

    def flip_mean(batch: torch.Tensor) -> torch.Tensor:
        return (net(batch) + net(torch.flip(batch, dims=[3]))) / 2

    padded = torch.nn.functional.pad(images, [1, 1, 1, 1], mode="reflect")
    expected = 0.5 * flip_mean(images) + 0.25 * flip_mean(padded[..., :8, :8]) + 0.25 * flip_mean(padded[..., 2:, 2:])
    with torch.no_grad():
        torch.testing.assert_close(tta_logits(net, images, "flip-translate"), expected.detach())
        torch.testing.assert_close(tta_logits(net, images, "flip"), flip_mean(images))


def test_a_recipe_fills_only_what_was_not_given() -> None:
    fast = TrainConfig("sqnxt23_w1", recipe="fast", batch_size=64).with_recipe()
    assert fast.batch_size == 64
    assert all(getattr(fast, k) == v for k, v in RECIPES["fast"].items() if k != "batch_size")
    default = TrainConfig("sqnxt23_w1").with_recipe()
    assert all(getattr(default, k) == v for k, v in RECIPES["default"].items())
    assert default.with_recipe() == default


def test_options_that_need_the_batched_loader_are_refused_without_it(tmp_path: Path) -> None:
    with pytest.raises(SqueezelabError, match="need the batched loader"):
        train(model="sqnxt23_w1", data="digits", cutout=4, output=str(tmp_path / "r"), progress=False)
    with pytest.raises(SqueezelabError, match="--cutout needs the batched loader"):
        train(model="sqnxt23_w1", data="digits", input_size=72, cutout=4, data_loader="auto", epochs=1,
              output=str(tmp_path / "r"), progress=False)
    assert not (tmp_path / "r").exists()


def test_eval_every_leaves_gaps_and_always_scores_the_last_epoch(tmp_path: Path) -> None:
    result = train(**{**FAST_DIGITS, "epochs": 3, "eval_every": 2}, output=str(tmp_path / "r"))
    tops = [row["val_top1"] for row in result.history]
    assert tops[0] is None and tops[1] is not None and tops[2] is not None
    assert (tmp_path / "r" / "curves.png").is_file()


def test_fast_recipe_resumes_bit_for_bit_after_an_interruption(tmp_path: Path) -> None:
    """Interrupted mid-epoch (SIGINT after 5 steps) and resumed, the run ends with the uninterrupted run's weights,
    weight average and metrics: the batch plans, derandomised flips, Cutout and EMA state all resume exactly."""
    whole = train(**FAST_DIGITS, output=str(tmp_path / "whole"))
    cut = train(**FAST_DIGITS, output=str(tmp_path / "cut"), after_step=stop_at(5))
    assert cut.interrupted
    resumed = train(TrainConfig(model="sqnxt23_w1", resume=str(tmp_path / "cut"), progress=False))
    for name in ("last.safetensors", "best.safetensors"):
        a, b = read_checkpoint(whole.run_dir / name)[0], read_checkpoint(resumed.run_dir / name)[0]
        assert all(torch.equal(a[k], b[k]) for k in a), name
    keys = ("train_loss", "val_loss", "val_top1")
    assert [[r[k] for k in keys] for r in whole.history] == [[r[k] for k in keys] for r in resumed.history]
    config = json.loads((tmp_path / "cut" / "config.json").read_text())
    assert config["ema_decay"] == 0.99 and config["data_loader"] == "auto" and config["derandomized_flips"]
    assert config["whiten_stem"]

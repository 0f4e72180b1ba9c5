"""Demo stages: the real ImageNet weights on photos that ship with scikit-image, and squeezelab's own
CIFAR-10 checkpoints on a slice of the CIFAR-10 test zip (or on the photos when the zip is absent)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data.datasets import SKIPPED_LABEL, cifar10_test_set
from ..errors import SqueezelabError
from ..extras import require
from ..plotting import new_figure
from ..tables import format_table
from ..weights import build_model, get_weights_entry, list_weights
from ..weights.registry import WEIGHTS_DIR_ENV, fetch_weights
from ..inference.predict import predict
from .report import DemoContext

#: CIFAR-10 test images the demo scores each checkpoint on (a fixed random subset; quick: fewer).
CIFAR10_SLICE, CIFAR10_SLICE_QUICK = 2000, 500

#: skimage photos whose ImageNet class all three weight sets agree on (shared/data README section 5.1).
PHOTOS = {
    "chelsea": "tabby / tiger cat / Egyptian cat",
    "coffee": "espresso",
    "stereo_motorcycle": "moped / motor scooter",
    "camera": "tripod",
}


def _photos(quick: bool) -> list[tuple[str, np.ndarray]]:
    """The demo's photos as (name, RGB array); the grey ``camera`` is stacked to three channels."""
    skdata = require("skimage.data", "the demo's photos")
    photos = []
    for name in list(PHOTOS)[: 3 if quick else None]:
        image = skdata.stereo_motorcycle()[0] if name == "stereo_motorcycle" else getattr(skdata, name)()
        photos.append((name, np.stack([image] * 3, axis=-1) if image.ndim == 2 else image))
    return photos


def _offline_weights(dataset: str) -> tuple[list[str], list[str]]:
    """The registered weights trained on ``dataset``: (available without a download, missing)."""
    available, missing = [], []
    for name in list_weights():
        if get_weights_entry(name).dataset != dataset:
            continue
        try:
            fetch_weights(name, allow_download=False)
            available.append(name)
        except SqueezelabError:
            missing.append(name)
    return available, missing


def pretrained_stage(ctx: DemoContext) -> None:
    """Predict the skimage photos with every registered ImageNet weight set available offline (no download)."""
    available, missing = _offline_weights("imagenet")
    ctx.artifacts["pretrained_weights"] = available
    how = (f"Weights not found locally: {', '.join(missing) or 'none'}. To get them run "
           f"`squeezelab predict MODEL --weights NAME IMAGE` once with network access (it downloads into the "
           f"cache and checks the sha256), or set `{WEIGHTS_DIR_ENV}` to a folder holding the upstream files "
           f"(`squeezelab convert --list` names them).")
    if not available:
        ctx.report.add("Pretrained weights", f"No pretrained weights are available offline on this machine.\n\n{how}")
        return
    photos = _photos(ctx.quick)
    images = [image for _, image in photos]
    columns = {}
    for name in available:
        columns[name] = predict(build_model(name), images, topk=3)
    rows = []
    for i, (photo, _) in enumerate(photos):
        expected = PHOTOS[photo]
        cells = [", ".join(f"{s.name} {s.probability:.2f}" for s in columns[name][i]) for name in available]
        rows.append([photo, expected, *cells])
    table = format_table(["photo", "expected", *available], rows, markdown=True)
    lines = []
    for name in available:
        entry = get_weights_entry(name)
        pre = entry.preprocess
        lines.append(f"- `{name}`: {entry.description}; preprocessing {pre.describe()}")
    entries = "\n".join(lines)
    ctx.report.add("Pretrained weights", f"Top-3 (softmax) of scikit-image photos with the real weights decoded from "
                   f"their upstream files.\n\n{entries}\n\n{table}" + (f"\n\n{how}" if missing else ""))


def _confusion(model: torch.nn.Module, dataset: Dataset, num_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class) over ``dataset`` (images that do not decode are left out)."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    with torch.no_grad():
        for images, labels in DataLoader(dataset, batch_size=250):
            readable = labels != SKIPPED_LABEL
            predicted = model(images[readable]).argmax(1)
            np.add.at(counts, (labels[readable].numpy(), predicted.numpy()), 1)
    return counts


def _confusion_figure(ctx: DemoContext, counts: np.ndarray, classes: list[str], name: str, title: str) -> str:
    fig = new_figure(figsize=(6.5, 5.5))
    ax = fig.subplots()
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            if counts[i, j]:
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    return ctx.report.save_figure(fig, name)


def cifar10_stage(ctx: DemoContext) -> None:
    """squeezelab's trained CIFAR-10 checkpoints: accuracy and confusion matrix on a slice of the test zip
    (``ctx.data_dir``), or their top-3 on the scikit-image photos when the zip is not there."""
    available, missing = _offline_weights("cifar10")
    if not available:
        ctx.report.add("Trained CIFAR-10 checkpoints", f"None available offline (missing: {', '.join(missing)}).")
        return
    zip_dir = ctx.data_dir if ctx.data_dir and (ctx.data_dir / "cifar10_test_jpeg.zip").is_file() else None
    lines = [f"- `{name}`: {get_weights_entry(name).description}" for name in available]
    if zip_dir is None:
        photos = _photos(ctx.quick)
        images = [image for _, image in photos]
        rows = [[photo] for photo, _ in photos]
        for name in available:
            for row, scores in zip(rows, predict(build_model(name), images, topk=3)):
                row.append(", ".join(f"{s.name} {s.probability:.2f}" for s in scores))
        table = format_table(["photo", *available], rows, markdown=True)
        ctx.report.add("Trained CIFAR-10 checkpoints", "\n".join(lines) + "\n\nThe CIFAR-10 test zip is not here "
                       "(`squeezelab demo --data DIR` with DIR holding `cifar10_test_jpeg.zip` scores them on it), "
                       f"so here is their top-3 on the scikit-image photos, squashed to 32 px:\n\n{table}")
        return
    limit = CIFAR10_SLICE_QUICK if ctx.quick else CIFAR10_SLICE
    rows, figures = [], []
    for name in available:
        model = build_model(name)
        dataset, classes = cifar10_test_set(zip_dir, model.pretrained_cfg.preprocess, limit=limit)
        counts = _confusion(model, dataset, len(classes))
        top1 = 100.0 * np.trace(counts) / counts.sum()
        full = get_weights_entry(name).metrics.get("cifar10_test_top1")
        rows.append([name, f"{top1:.2f}", f"{full:.2f}" if full is not None else "", int(counts.sum())])
        figures.append(_confusion_figure(ctx, counts, classes, f"confusion_{name}.png",
                                         f"{name}: {top1:.1f}% top-1 on {counts.sum()} CIFAR-10 test images"))
        ctx.artifacts[f"cifar10_top1/{name}"] = top1
    table = format_table(["weights", f"top-1 % on {limit} test images", "top-1 % on all 10,000 (registry)",
                          "images"], rows, markdown=True)
    ctx.report.add("Trained CIFAR-10 checkpoints", "\n".join(lines) + f"\n\nScored on a fixed random {limit}-image "
                   f"slice of `{zip_dir / 'cifar10_test_jpeg.zip'}` (`squeezelab eval MODEL --weights NAME --data "
                   f"cifar10:DIR` scores all 10,000).\n\n{table}\n\n" + "\n\n".join(figures))

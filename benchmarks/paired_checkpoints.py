"""Paired comparison of two checkpoints on one labelled test set: each one's top-1, the images only one of them
gets right, the exact McNemar test on those, and how often their top-1 predictions agree, per test-time
augmentation.

Two accuracies 0.1-0.4 points apart on CIFAR-10's 10,000 test images are within one standard error of each
(about 0.3 points), but both models see the same images, so the question "is B better than A" is answered by
the images they disagree on: under "equally good", each discordant image is B's with probability 1/2
(McNemar 1947, exact binomial form). Used for issue 30 to decide whether a warm-restart stage improves on the
checkpoint it continues (src/squeezelab/weights/trained/TRAINED.md):

    .venv/bin/python benchmarks/paired_checkpoints.py sqnxt23v5_w1.cifar10 cycle3/last.safetensors \
        --data cifar10:DIR --threads 2 --json benchmarks/results/paired_sqnxt23v5_w1_cycle3.json
"""

from __future__ import annotations

import argparse
import math
from typing import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from _script import exit_status, write_results
from squeezelab.data.sources import ImageDataset, ModelInput
from squeezelab.errors import SqueezelabError
from squeezelab.evaluation import TTA_MODES, tta_logits
from squeezelab.inference.evaluate import evaluation_images
from squeezelab.tables import format_table
from squeezelab.weights import build_model
from squeezelab.weights.checkpoint import pretrained_cfg_of


def mcnemar_exact_p(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value: the binomial(n, 1/2) probability of a split of the ``n`` discordant
    images at least as uneven as the one observed."""
    n = only_first + only_second
    tail = sum(math.comb(n, k) for k in range(min(only_first, only_second) + 1))
    return min(1.0, 2 * tail / 2 ** n)


@torch.no_grad()
def top1_predictions(model: nn.Module, data: str, tta: str, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-1 class of every image of ``data`` (``cifar10:DIR`` or a labelled folder, as ``squeezelab eval``) and
    its label, in file order."""
    meta = pretrained_cfg_of(model)
    dataset = ImageDataset(evaluation_images(data, meta), ModelInput(meta.require_preprocess("evaluation")), report_errors=True)
    predicted, labels = [], []
    for images, batch_labels, errors in DataLoader(dataset, batch_size=batch_size):
        failed = [e for e in errors if e]
        if failed:
            raise SqueezelabError(failed[0])
        predicted.append(tta_logits(model, images, tta).argmax(dim=1))
        labels.append(batch_labels)
    return torch.cat(predicted), torch.cat(labels)


def compare(first: str, second: str, data: str, modes: Sequence[str], batch_size: int) -> list[dict]:
    """One row per TTA mode: both top-1s, the discordant counts, McNemar's p and the top-1 agreement."""
    models = [build_model(name).eval() for name in (first, second)]
    categories = [pretrained_cfg_of(model).categories for model in models]
    if categories[0] != categories[1]:
        raise SqueezelabError(f"{first} and {second} predict different categories; compare checkpoints of one "
                              f"label set")
    rows = []
    for tta in modes:
        (first_pred, labels), (second_pred, _) = (top1_predictions(m, data, tta, batch_size) for m in models)
        first_hit, second_hit = first_pred == labels, second_pred == labels
        only_first, only_second = int((first_hit & ~second_hit).sum()), int((second_hit & ~first_hit).sum())
        rows.append({"tta": tta, "images": len(labels),
                     "first_top1": 100.0 * first_hit.float().mean().item(),
                     "second_top1": 100.0 * second_hit.float().mean().item(),
                     "only_first": only_first, "only_second": only_second,
                     "mcnemar_p": mcnemar_exact_p(only_first, only_second),
                     "agreement": 100.0 * (first_pred == second_pred).float().mean().item()})
        print(f"{tta}: done", flush=True)
    return rows


def main() -> int:
    return exit_status(run)


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", help="weights name or .safetensors file (the baseline)")
    parser.add_argument("second", help="weights name or .safetensors file (the candidate)")
    parser.add_argument("--data", required=True, help="cifar10:DIR or a labelled image folder, as 'squeezelab eval'")
    parser.add_argument("--tta", nargs="+", choices=TTA_MODES, default=["none", "flip"])
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default="benchmarks/results/paired_checkpoints.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = compare(args.first, args.second, args.data, args.tta, args.batch_size)
    print(format_table(["TTA", "first top-1 %", "second top-1 %", "only first", "only second", "McNemar p",
                        "agreement %"],
                       [[r["tta"], f"{r['first_top1']:.2f}", f"{r['second_top1']:.2f}", r["only_first"],
                         r["only_second"], f"{r['mcnemar_p']:.3f}", f"{r['agreement']:.2f}"] for r in rows]))
    write_results(args.json, {"first": args.first, "second": args.second, "data": args.data, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

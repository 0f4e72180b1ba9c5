"""Weight averaging ("model soup", Wortsman et al. 2022): score a weighted average of checkpoints of one
architecture, with its BatchNorm statistics recomputed on the training images, against each checkpoint.

Checkpoints fine-tuned from one another (a warm restart and its parent) usually lie in one basin, where the
average of their weights can beat both. Used for issue 30 on the sqnxt23v5_w1 CIFAR-10 stages
(src/squeezelab/weights/trained/TRAINED.md, "The road to 90"):

    .venv/bin/python benchmarks/weight_average.py sqnxt23v5_w1.cifar10 stage3/last.safetensors \
        --data cifar10:DIR --mixes 1 0.7 0.5 0.3 0 --threads 1 --json benchmarks/results/weight_average_sqnxt23v5_w1.json

Each mix is the first checkpoint's share (the second gets the rest); every row, the pure ones included,
has its BatchNorm statistics recomputed the same way (the trainer's EMA evaluation, 100 batches), so the
rows differ only in the weights.
"""

from __future__ import annotations

import argparse

import torch

from _script import exit_status, write_results
from squeezelab.data.datasets import build_datasets
from squeezelab.errors import SqueezelabError
from squeezelab.evaluation import evaluate_model
from squeezelab.models import create_model
from squeezelab.tables import format_table
from squeezelab.train.recipe import recompute_bn_statistics
from squeezelab.weights.checkpoint import CheckpointMeta
from squeezelab.weights.loader import load_weights

BN_SEED = 12345


def mixed_state(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor], share: float
                ) -> dict[str, torch.Tensor]:
    """``share * first + (1 - share) * second`` for floating tensors; integer buffers (BN counters) from ``first``."""
    return {key: torch.lerp(second[key].float(), first[key].float(), share).to(first[key].dtype)
            if first[key].is_floating_point() else first[key] for key in first}


def network(meta: CheckpointMeta) -> tuple:
    """What fixes a checkpoint's tensors: two checkpoints average only where this is the same."""
    return meta.architecture, meta.num_classes, meta.in_chans, sorted(meta.model_kwargs.items())


def main() -> int:
    return exit_status(run)


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", help="weights name or .safetensors file")
    parser.add_argument("second", help="weights name or .safetensors file of the same architecture")
    parser.add_argument("--data", required=True, help="the training data source, e.g. cifar10:DIR")
    parser.add_argument("--mixes", type=float, nargs="+", default=[1.0, 0.7, 0.5, 0.3, 0.0],
                        help="the first checkpoint's shares to score")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default="benchmarks/results/weight_average.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    first, meta = load_weights(args.first)
    second, second_meta = load_weights(args.second)
    if network(second_meta) != network(meta):
        raise SqueezelabError(f"{args.first} is {network(meta)} and {args.second} {network(second_meta)}: average "
                              f"checkpoints of one network (architecture, classes, channels, model options)")
    bundle = build_datasets(args.data, meta.input_size, in_chans=meta.in_chans, pretrained=meta.preprocess)
    model = create_model(meta.architecture, num_classes=meta.num_classes, in_chans=meta.in_chans, **meta.model_kwargs)
    rows = []
    for share in args.mixes:
        model.load_state_dict(mixed_state(first, second, share))
        model.train()
        recompute_bn_statistics(model, bundle.train, batch_size=args.batch_size, seed=BN_SEED,
                                device=torch.device("cpu"))
        result = evaluate_model(model, bundle.val, batch_size=args.batch_size)
        rows.append({"share_of_first": share, "top1": result.top1, "top5": result.top5, "loss": result.loss})
        print(f"share {share:g}: top-1 {result.top1:.2f}%", flush=True)
    print(format_table(["share of first", "test top-1 %", "top-5 %", "loss"],
                       [[f"{r['share_of_first']:g}", f"{r['top1']:.2f}", f"{r['top5']:.2f}", f"{r['loss']:.4f}"]
                        for r in rows]))
    write_results(args.json, {"first": args.first, "second": args.second, "data": args.data, "bn_seed": BN_SEED,
                              "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``squeezelab train``: train or fine-tune a zoo model on a dataset (``docs/training.md``).

Under ``torchrun --nproc_per_node N -m squeezelab train ...`` it runs
DistributedDataParallel (``docs/distributed.md``).
"""

from __future__ import annotations

import argparse
import json

from ..errors import SqueezelabError


def _json_dict(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object such as '{\"dropout\": 0.2}'")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train or fine-tune a model on digits, Fashion-MNIST, CIFAR-10 zips or an image folder",
        description="Train a zoo model. The run directory gets best/last .safetensors checkpoints, state.pt for "
                    "--resume, metrics.json/csv and curves.png.")
    p.add_argument("model", help="model name, e.g. squeezenet1_1 or sqnxt23_w1")
    p.add_argument("--data", default="digits",
                   help="digits (default), fashion-mnist[:DIR], cifar10:DIR (with the JPEG zips) or an image folder")
    p.add_argument("--output", "-o", help="run directory (default runs/MODEL)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--input-size", type=int, help="square input side (default 32 for digits/Fashion-MNIST/CIFAR, "
                                                  "224 for folders); <= 64 px switches on small_input stems")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", "-b", type=int, default=64, help="per process")
    p.add_argument("--lr", type=float,
                   help="base LR (default 0.04 x batch/512 for SqueezeNet, 0.4 x sqrt(batch/1024) with BN)")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--schedule", choices=("cosine", "poly"), default="cosine")
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--amp", choices=("auto", "on", "off"), default="auto", help="mixed precision (auto: on for CUDA)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="channels_last memory format (default: on; faster on CPU in every case of "
                        "benchmarks/train_throughput.py)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--workers", type=int, help="data loader workers (default 0 on CPU, up to 8 on CUDA)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; 1 is fastest on a busy machine)")
    p.add_argument("--pretrained", metavar="CKPT", help="fine-tune from a squeezelab .safetensors checkpoint; "
                                                        "a new classifier replaces one with another class count")
    p.add_argument("--freeze-features", action="store_true", help="train only the classifier")
    p.add_argument("--num-classes", type=int, help="assert the data has this many classes")
    p.add_argument("--in-chans", type=int, choices=(1, 3), help="force grey (1) or RGB (3) input")
    p.add_argument("--model-kwargs", type=_json_dict, default={}, metavar="JSON",
                   help="create_model overrides, e.g. '{\"small_input\": false, \"dropout\": 0.2}'")
    p.add_argument("--no-augment", dest="augment", action="store_false", help="no random crops/flips")
    p.add_argument("--val-fraction", type=float, default=0.2, help="held-out share for digits and folders without val/")
    p.add_argument("--train-limit", type=int, help="train on a fixed random subset of this many images")
    p.add_argument("--val-limit", type=int, help="validate on a fixed random subset of this many images")
    p.add_argument("--grad-clip", type=float, help="clip the gradient norm to this value")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--prune-masks", metavar="FILE", help="keep these pruning masks (from 'squeezelab compress "
                   "--save-masks') applied after every step, to retrain a pruned model")
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from ..train import TrainConfig, train

    options = {k: v for k, v in vars(args).items() if k in TrainConfig.field_names()}
    if args.train_limit is not None and args.train_limit < 1:
        raise SqueezelabError(f"--train-limit must be >= 1, got {args.train_limit}")
    if args.prune_masks:
        from ..compress.prune import ApplyMasks, load_masks

        options["after_step"] = ApplyMasks(load_masks(args.prune_masks))
    result = train(TrainConfig(**options))
    if result.interrupted:
        return 130
    final = result.final
    print(f"best val top-1 {result.best_top1:.2f}% (last epoch {final.get('val_top1', 0.0):.2f}%), "
          f"{result.seconds:.1f}s; checkpoints in {result.run_dir}: best.safetensors, last.safetensors; "
          f"metrics.csv, curves.png")
    return 0

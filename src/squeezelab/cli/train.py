"""``squeezelab train``: train or fine-tune a zoo model on a dataset (``docs/training.md``).

Under ``torchrun --nproc_per_node N -m squeezelab train ...`` it runs
DistributedDataParallel (``docs/distributed.md``). Every option defaults to
"not given" here; the real defaults live in :class:`~squeezelab.train.TrainConfig`,
so ``--resume`` can tell a flag the user typed from a default and take every
setting the user did not type from the saved run.
"""

from __future__ import annotations

import argparse
import json

from ..errors import SqueezelabError
from ..train.config import (ADAMW_SOLVER, AMP_MODES, DATA_LOADERS, DEFAULT_WEIGHT_DECAY, OPTIMIZERS,
                            RECIPES, SCHEDULES, SQUEEZENET_SOLVER, SQUEEZENEXT_SOLVER, TrainConfig)
from .args import batch_size, float_range, input_size, int_range, non_negative_float, positive_float, positive_int


def _json_dict(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object such as '{\"dropout\": 0.2}'")
    return value


def _recipe_default(name: str) -> str:
    """A recipe-owned option's default in each recipe, for the help: ``recipe: 64 (default), 256 (fast)``."""
    return "recipe: " + ", ".join(f"{settings[name]} ({recipe})" for recipe, settings in RECIPES.items())


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train or fine-tune a model on digits, Fashion-MNIST, CIFAR-10 zips or an image folder",
        argument_default=argparse.SUPPRESS,
        description="Train a zoo model. The run directory gets best/last .safetensors checkpoints, state.pt for "
                    "--resume, metrics.json/csv and curves.png. '--resume RUN' continues a run with every setting "
                    "it was started with; a flag that conflicts with them is an error, except a larger --epochs, "
                    "which extends the run with a new schedule.")
    p.add_argument("model", nargs="?", help="model name, e.g. squeezenet1_1 or sqnxt23_w1 (optional with --resume)")
    p.add_argument("--data", help="digits (default), fashion-mnist[:DIR], cifar10:DIR (with the JPEG zips) or an "
                                  "image folder")
    p.add_argument("--output", "-o", help="run directory (default runs/MODEL); an existing run there needs "
                                          "--resume or --overwrite")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped, with "
                                                       "its saved settings")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --output")
    p.add_argument("--stop-after", type=positive_int, metavar="N",
                   help="stop once N epochs of the planned schedule are done (state saved); --resume continues the "
                        "same schedule")
    p.add_argument("--seed", type=int_range(0, 2**32 - 1, what="a seed"), help=f"default {TrainConfig.seed}")
    p.add_argument("--data-seed", type=int_range(0, 2**32 - 1, what="a seed"),
                   help="seed of the train/val split and --train-limit/--val-limit subsets (default: --seed)")
    p.add_argument("--input-size", type=input_size, help="square input side (default 32 for digits/Fashion-MNIST/"
                                                         "CIFAR, 224 for folders); <= 64 px switches on small_input "
                                                         "stems")
    p.add_argument("--epochs", type=positive_int, help=f"default {TrainConfig.epochs}")
    p.add_argument("--batch-size", "-b", type=batch_size, help=f"per process (default {_recipe_default('batch_size')})")
    p.add_argument("--optimizer", choices=OPTIMIZERS,
                   help=f"default {TrainConfig.optimizer}: SGD with momentum for models with BatchNorm, AdamW for "
                        "SqueezeNet (no BN)")
    p.add_argument("--lr", type=positive_float,
                   help=f"base LR (default: SGD {SQUEEZENEXT_SOLVER[0]} x sqrt(batch/{SQUEEZENEXT_SOLVER[1]}) with "
                        f"BN, {SQUEEZENET_SOLVER[0]} x batch/{SQUEEZENET_SOLVER[1]} without; AdamW {ADAMW_SOLVER[0]} x "
                        f"sqrt(batch/{ADAMW_SOLVER[1]}))")
    p.add_argument("--momentum", type=float_range(0.0, 1.0, high_open=True),
                   help=f"SGD momentum (default {TrainConfig.momentum})")
    p.add_argument("--weight-decay", type=non_negative_float,
                   help=f"default {DEFAULT_WEIGHT_DECAY['sgd']:g} for SGD, {DEFAULT_WEIGHT_DECAY['adamw']:g} for AdamW")
    p.add_argument("--schedule", choices=SCHEDULES, help=f"default {TrainConfig.schedule}")
    p.add_argument("--warmup-epochs", type=non_negative_float, help=f"default {TrainConfig.warmup_epochs:g}")
    p.add_argument("--label-smoothing", type=float_range(0.0, 1.0, high_open=True),
                   help=f"default {_recipe_default('label_smoothing')}")
    p.add_argument("--recipe", choices=RECIPES,
                   help=f"default {TrainConfig.recipe}; the recipe sets the options marked 'recipe' that are not "
                        "given (docs/training.md, 'The fast recipe')")
    p.add_argument("--nesterov", action=argparse.BooleanOptionalAction,
                   help=f"Nesterov momentum, SGD only (default {_recipe_default('nesterov')})")
    p.add_argument("--ema-decay", type=float_range(0.0, 1.0, high_open=True),
                   help="evaluate and save an exponential moving average of the weights with this decay per step "
                        "(default 0: off); BN statistics are recomputed on the average")
    p.add_argument("--swa", action="store_true",
                   help="evaluate and save the uniform average of the weights after every step of the run "
                        "(stochastic weight averaging; with --schedule constant, often from --pretrained), "
                        "instead of --ema-decay's exponential one")
    p.add_argument("--whiten-stem", action="store_true",
                   help="start the first convolution as a whitening transform of the training images' patches "
                        "(training from scratch; docs/training.md, 'The fast recipe')")
    p.add_argument("--data-loader", choices=DATA_LOADERS,
                   help=f"default {_recipe_default('data_loader')}; 'batched' keeps images of at most 64 px "
                        "decoded and augments whole batches")
    p.add_argument("--derandomized-flips", action=argparse.BooleanOptionalAction,
                   help="flip each image every other epoch instead of at random, batched loader only (default "
                        f"{_recipe_default('derandomized_flips')})")
    p.add_argument("--cutout", type=int_range(0, 4096, what="a Cutout side"),
                   help="Cutout square side in px (batched loader; default 0: off)")
    p.add_argument("--eval-every", type=positive_int, metavar="K",
                   help="evaluate every K epochs (and after the last); default 1")
    p.add_argument("--amp", choices=AMP_MODES,
                   help=f"mixed precision (default {TrainConfig.amp}: on for CUDA and for CPUs with native BF16, "
                        "avx512_bf16 or amx_bf16)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                   help="channels_last memory format (default: on; faster on CPU in every case of "
                        "benchmarks/train_throughput.py)")
    p.add_argument("--device", help="auto (default), cpu or cuda[:N]")
    p.add_argument("--workers", type=int_range(0, 64, what="a worker count"),
                   help="data loader workers (default 0 on CPU, up to 8 on CUDA)")
    p.add_argument("--threads", type=int_range(1, 1024, what="a thread count"),
                   help="torch CPU threads (default: torch's; 1 is fastest on a busy machine)")
    p.add_argument("--pretrained", metavar="WEIGHTS", help="fine-tune from registered weights "
                   "(squeezenet1_1.torchvision, ...) or any weights file (checkpoint, .sqz, .net, ...); a new "
                   "classifier replaces one with another class count")
    p.add_argument("--freeze-features", action="store_true", help="train only the classifier")
    p.add_argument("--num-classes", type=positive_int, help="assert the data has this many classes")
    p.add_argument("--in-chans", type=int, choices=(1, 3), help="force grey (1) or RGB (3) input")
    p.add_argument("--model-kwargs", type=_json_dict, metavar="JSON",
                   help="create_model overrides, e.g. '{\"small_input\": false, \"dropout\": 0.2}'")
    p.add_argument("--no-augment", dest="augment", action="store_false", help="no random crops/flips")
    p.add_argument("--val-fraction", type=float_range(0.0, 1.0, low_open=True, high_open=True),
                   help=f"held-out share for digits and folders without val/ (default {TrainConfig.val_fraction}); "
                        "an error for data with its own validation split")
    p.add_argument("--train-limit", type=positive_int, help="train on a fixed random subset of this many images")
    p.add_argument("--val-limit", type=positive_int, help="validate on a fixed random subset of this many images")
    p.add_argument("--grad-clip", type=positive_float, help="clip the gradient norm to this value")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--prune-masks", metavar="FILE", help="keep these pruning masks (from 'squeezelab compress "
                   "--save-masks') applied after every step, to retrain a pruned model; the run keeps a copy, which "
                   "--resume re-applies")
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from ..train import TrainConfig, train

    given = {k: v for k, v in vars(args).items() if k in TrainConfig.field_names()}
    if "model" not in given and "resume" not in given:
        raise SqueezelabError("give a model name (e.g. 'squeezelab train squeezenet1_1'), or --resume RUN_DIR")
    result = train(TrainConfig(**{"model": "", **given}), explicit=given.keys())
    if result.interrupted:
        return 130
    if not result.seconds:  # nothing to do (a finished run, or one already past --stop-after): the log said so
        return 0
    final = result.final
    curves = ", curves.png" if (result.run_dir / "curves.png").is_file() else ""
    print(f"best val top-1 {result.best_top1:.2f}% (last epoch {final.get('val_top1', 0.0):.2f}%), "
          f"{result.seconds:.1f}s; checkpoints in {result.run_dir}: best.safetensors, last.safetensors; "
          f"metrics.csv{curves}")
    return 0

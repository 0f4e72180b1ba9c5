"""``squeezelab eval``: top-1 / top-5 accuracy on a folder of labelled images."""

from __future__ import annotations

import argparse
import json
import os

import torch

from ..evaluation import TTA_MODES
from ..inference import evaluate
from ..io import atomic_write_text
from ..weights import build_model
from .args import batch_size, check_outputs, int_range, warn, weights_inputs


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="top-1/top-5 accuracy on an ImageFolder, ImageNet-sample folder or "
                                           "the CIFAR-10 test zip")
    p.add_argument("model", help="model name (checked against the weights' architecture)")
    p.add_argument("--weights", required=True, help="registered name (see 'squeezelab convert --list') or a file")
    p.add_argument("--data", required=True, help="class folders (sorted order = class index), nXXXXXXXX_*.JPEG files, "
                                                 "or cifar10:DIR (the test zip in DIR) for CIFAR-10 weights")
    p.add_argument("--batch-size", type=batch_size, default=50)
    p.add_argument("--workers", type=int_range(0, 64, what="a worker count"), default=min(4, os.cpu_count() or 1),
                   help="data loader processes (0: load in this process)")
    p.add_argument("--threads", type=int_range(1, 1024, what="a thread count"),
                   help="torch CPU threads (default: torch's; 1 is fastest on a busy machine)")
    p.add_argument("--tta", choices=TTA_MODES, default="none",
                   help="test-time augmentation: 'flip' averages the logits of each image and its mirror image "
                        "(for weights trained with flips, such as the CIFAR-10 checkpoints); default none")
    p.add_argument("--json", metavar="OUT", help="also write the results (with per-class accuracy) as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    inputs = weights_inputs(args.weights)
    check_outputs(args.json, inputs=inputs)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_model(args.weights, architecture=args.model)
    meta = model.pretrained_cfg
    result = evaluate(model, args.data, batch_size=args.batch_size, workers=args.workers,
                      progress=not args.no_progress, warn=warn, tta=args.tta)
    tta = "" if args.tta == "none" else f", {args.tta} test-time augmentation"
    print(f"{meta.architecture} weights {args.weights} on {args.data} [{result['layout']}{tta}]")
    print(f"top-1 {result['top1']:.2f}%  top-5 {result['top5']:.2f}%  ({result['count']} images, "
          f"{result['skipped']} non-image files skipped, {result['seconds']:.1f}s)")
    if args.json:
        payload = {"model": meta.architecture, "weights": str(args.weights), "data": str(args.data),
                   "threads": torch.get_num_threads(), **result}
        atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n", inputs=inputs)
        print(f"wrote {args.json}")
    return 0

"""``squeezelab predict``: top-k classes of images with pretrained or trained weights."""

from __future__ import annotations

import argparse
import json

from ..inference import predict
from ..weights import build_model
from .args import int_range


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("predict", help="top-k classes of images (preprocessing from the weights' metadata)")
    p.add_argument("model", help="model name (checked against the weights' architecture)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--weights", required=True, help="registered name (see 'squeezelab convert --list') or a file")
    p.add_argument("--topk", type=int_range(1, 1000, what="a class count"), default=5,
                   help="classes shown per image (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model = build_model(args.weights, architecture=args.model)
    results = predict(model, args.images, topk=args.topk)
    if args.json:
        print(json.dumps([{"image": img, "top": [vars(c) for c in top]} for img, top in zip(args.images, results)],
                         indent=2))
        return 0
    for image, top in zip(args.images, results):
        print(image)
        for rank, score in enumerate(top, 1):
            print(f"  {rank}. {score.name:28s} {score.probability:7.4f}  (class {score.index})")
    return 0

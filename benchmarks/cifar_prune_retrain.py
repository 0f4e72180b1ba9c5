"""Pruning a CIFAR-10 model, with and without retraining: the Deep Compression recovery curve.

Start from a checkpoint trained with ``squeezelab train MODEL --data cifar10:DIR`` (docs/training.md),
prune every conv/FC weight to each density by magnitude (per layer), measure test top-1, retrain for
``--epochs`` with the masks kept after every step (``squeezelab train --prune-masks``), and measure
again. Prints a table and writes JSON.

    python benchmarks/cifar_prune_retrain.py --checkpoint runs/cifar-squeezenet1_1/best.safetensors
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from squeezelab.compress.prune import ApplyMasks, apply_masks, magnitude_masks, save_masks
from squeezelab.data import build_datasets
from squeezelab.export.timing import machine_info
from squeezelab.io import atomic_write_text
from squeezelab.tables import format_table
from squeezelab.train import TrainConfig, evaluate_model, train
from squeezelab.weights import build_model, save_checkpoint

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a CIFAR-10 .safetensors checkpoint from squeezelab train")
    parser.add_argument("--data", default=f"cifar10:{REPO.parent / 'shared' / 'data'}")
    parser.add_argument("--densities", default="1.0,0.7,0.5,0.3")
    parser.add_argument("--epochs", type=int, default=1, help="retraining epochs per density")
    parser.add_argument("--train-limit", type=int, default=10000)
    parser.add_argument("--val-limit", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "cifar_prune_retrain.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = build_model(args.checkpoint)
    meta = model.pretrained_cfg
    dense_state = {k: v.clone() for k, v in model.state_dict().items()}
    bundle = build_datasets(args.data, meta.preprocess.crop, augment=False, val_limit=args.val_limit)
    rows, records = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for density in (float(d) for d in args.densities.split(",")):
            model.load_state_dict(dense_state)
            masks = magnitude_masks(dict(model.named_parameters()), density)
            apply_masks(model, masks)
            pruned = evaluate_model(model, bundle.val)
            pruned_ckpt = Path(tmp) / f"pruned_{density}.safetensors"
            save_checkpoint(pruned_ckpt, model.state_dict(), meta)
            save_masks(Path(tmp) / f"masks_{density}.safetensors", masks)
            start = time.perf_counter()
            result = train(TrainConfig(meta.architecture, data=args.data, pretrained=str(pruned_ckpt),
                                       input_size=meta.preprocess.crop, model_kwargs=meta.model_kwargs,
                                       epochs=args.epochs, optimizer="sgd", lr=args.lr, warmup_epochs=0.0,
                                       threads=args.threads,
                                       train_limit=args.train_limit, val_limit=args.val_limit, progress=False,
                                       output=str(Path(tmp) / f"retrain_{density}"), after_step=ApplyMasks(masks)))
            seconds = time.perf_counter() - start
            retrained = result.final.get("val_top1", 0.0)
            rows.append([f"{density:.0%}", f"{pruned.top1:.2f}", f"{retrained:.2f}", f"{seconds:.0f}"])
            records.append({"density": density, "pruned_top1": pruned.top1, "retrained_top1": retrained,
                            "retrain_epochs": args.epochs, "retrain_seconds": seconds})
    print(format_table(["density", "pruned top-1 %", f"after {args.epochs} epoch(s) retraining %", "retrain s"], rows))
    atomic_write_text(args.json, json.dumps({"checkpoint": args.checkpoint, "architecture": meta.architecture,
                                             "val_images": len(bundle.val), "machine": machine_info(),
                                             "rows": records}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

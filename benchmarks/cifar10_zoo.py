"""Train zoo models on the full CIFAR-10 with the default recipe, evaluate them, and write the results.

One command for the whole job, on a GPU (minutes) or a CPU (hours; rerun the same
command to continue, every run resumes from its last finished epoch)::

    python benchmarks/cifar10_zoo.py --data DIR [--models squeezenet1_1 sqnxt23v5_w1 ...] [--epochs 30]
                                     [--out runs/cifar10] [--json OUT.json]

DIR holds ``cifar10_train_jpeg.zip`` and ``cifar10_test_jpeg.zip``. Each model trains
``squeezelab train MODEL --data cifar10:DIR --epochs N`` (50k training images, 32 px,
small-input stems, tested on the 10k test images after every epoch) into
``OUT/MODEL``; the JSON records the last epoch's top-1/top-5 (what a shipped
checkpoint states), the same checkpoint's top-1/top-5 with flip test-time augmentation
(``squeezelab eval --tta flip``), the best epoch, the wall time, the device and the machine.
``--amp auto`` is the trainer's: bf16 on GPUs and on CPUs with native BF16.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from squeezelab.export.timing import OtherLoad, machine_info
from squeezelab.inference import evaluate
from squeezelab.io import atomic_write_text
from squeezelab.tables import format_table
from squeezelab.train import TrainConfig, train
from squeezelab.train.state import STATE_FILE
from squeezelab.weights import build_model

DEFAULT_MODELS = ["squeezenet1_1", "sqnxt23v5_w1", "sqnxt23_w1", "squeezenet1_0"]


def train_one(model: str, data: str, epochs: int, out: Path, threads: int | None) -> dict:
    """Train (or resume, or just read back) ``model``; its last and best test accuracy."""
    run_dir = out / model
    config = TrainConfig(model, data=f"cifar10:{data}", epochs=epochs, threads=threads, progress=False,
                         output=str(run_dir))
    result = train(config, resume=str(run_dir) if (run_dir / STATE_FILE).is_file() else None)
    history = json.loads((run_dir / "metrics.json").read_text())["epochs"]
    last = history[-1]
    flip = {}
    if not result.interrupted:  # the finished checkpoint, scored with its mirror images too
        net = build_model(run_dir / "last.safetensors", architecture=model)
        flip = evaluate(net, f"cifar10:{data}", batch_size=256, tta="flip")
    return {"model": model, "epochs_done": len(history), "epochs": epochs, "test_top1": last["val_top1"],
            "test_top5": last["val_top5"], "test_top1_flip": flip.get("top1"), "test_top5_flip": flip.get("top5"),
            "best_top1": max(row["val_top1"] for row in history),
            "best_epoch": max(history, key=lambda row: row["val_top1"])["epoch"],
            "train_seconds": sum(row["seconds"] for row in history), "interrupted": result.interrupted,
            "run_dir": str(run_dir)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder holding the two CIFAR-10 JPEG zips")
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", default="runs/cifar10", help="run directories (resumed when present)")
    parser.add_argument("--threads", type=int, help="CPU threads per run (default: torch's)")
    parser.add_argument("--json", default="benchmarks/results/cifar10_zoo.json")
    args = parser.parse_args()
    records: list[dict] = []
    start = time.perf_counter()
    with OtherLoad() as other:
        for model in args.models:
            records.append(train_one(model, args.data, args.epochs, Path(args.out), args.threads))
            if records[-1]["interrupted"]:
                break
    atomic_write_text(args.json, json.dumps({"machine": machine_info(), "other_process_cores": other.cores,
                                             "wall_seconds": time.perf_counter() - start, "runs": records},
                                            indent=2))
    rows = [[r["model"], f"{r['epochs_done']}/{r['epochs']}", f"{r['test_top1']:.2f}", f"{r['test_top5']:.2f}",
             "-" if r["test_top1_flip"] is None else f"{r['test_top1_flip']:.2f}",
             f"{r['best_top1']:.2f} (epoch {r['best_epoch']})", f"{r['train_seconds'] / 60:.1f}"] for r in records]
    print(format_table(["model", "epochs", "test top-1 %", "test top-5 %", "top-1 % with flips", "best epoch top-1 %",
                        "train min"], rows))
    print(f"wrote {args.json}")
    return 130 if records and records[-1]["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())

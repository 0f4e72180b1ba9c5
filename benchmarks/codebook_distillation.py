"""Does distilling the shared centroids on thousands of unlabeled images lift 6-bit fidelity? (issue 16)

Each row compresses the weights at ``--bits`` (exact k-means, then least squares on 32 CIFAR-10
*train* images + the scikit-image photos, as ``benchmarks/compression_curve.py``), then retrains only
the centroids (masks and codes held) by distillation from the uncompressed model on ``N`` evenly
spaced CIFAR-10 *train* images (``squeezelab compress --finetune``, Han et al. 2016 Sec. 3.3). Fidelity after
each stage is measured on the standard set (``--limit`` CIFAR-10 test images + the 100 ImageNet
samples), which no stage has seen. JSON after every row::

    .venv/bin/python benchmarks/codebook_distillation.py --images 1000 2000 --lrs 0.001 0.01 0.03
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from compression_curve import SHARED, calibration_images, child_fidelity
from squeezelab.compress.fidelity import collect_logits, standard_images
from squeezelab.data.sources import cifar10_split
from squeezelab.compress.pipeline import compress_model
from squeezelab.export.timing import OtherLoad, machine_info
from squeezelab.io import atomic_write_text
from squeezelab.tables import format_table
from squeezelab.weights.loader import load_weights, model_from_state

#: CIFAR-10 training images that calibrate the least-squares stage (as benchmarks/compression_curve.py).
CALIBRATION_IMAGES = 32
#: Stages before the distillation: the same for every row, so their fidelity is measured once.
SHARED_STAGES = ("k-means", "least-squares")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="squeezenet1_1.torchvision")
    parser.add_argument("--bits", type=int, default=6)
    parser.add_argument("--images", type=int, nargs="+", default=[1000, 2000], help="distillation image counts")
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.01], help="centroid learning rates")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--data", default=str(SHARED), help="folder with cifar10_*_jpeg.zip and images/")
    parser.add_argument("--limit", type=int, default=1000, help="CIFAR-10 test images in the fidelity set")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default="benchmarks/results/codebook_distillation.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    state, meta = load_weights(args.weights)
    evaluation = standard_images(meta.preprocess, data_dir=args.data, limit=args.limit)
    calibration = calibration_images(meta.preprocess, args.data, CALIBRATION_IMAGES)
    parent = model_from_state(state, meta)
    logits, labels = collect_logits({"parent": parent}, evaluation)
    before_distillation: dict[str, dict] = {}

    def fidelity(name: str, compressed) -> dict:
        if name in before_distillation:
            return before_distillation[name]
        measured = child_fidelity(meta, compressed, logits["parent"], labels, evaluation)
        if name in SHARED_STAGES:
            before_distillation[name] = measured
        return measured

    rows: list[dict] = []

    def write(other_cores: float | None) -> None:
        atomic_write_text(args.json, json.dumps({
            "fidelity_set": f"{args.limit} CIFAR-10 test images + the 100 ImageNet samples",
            "calibration": f"{len(calibration)} images: scikit-image photos + CIFAR-10 train",
            "machine": machine_info(), "other_process_cores": other_cores, "rows": rows}, indent=2) + "\n")

    with OtherLoad() as other:
        for count in args.images:
            tuning = cifar10_split(args.data, "train").subset(count).batches(meta.preprocess).tensors()
            for lr in args.lrs:
                stages: dict[str, dict] = {}
                start = time.perf_counter()
                compress_model(state, meta, bits=args.bits, calibration=calibration,
                               finetune=(tuning, torch.full((len(tuning),), -1)), finetune_epochs=args.epochs,
                               finetune_lr=lr,
                               on_stage=lambda name, compressed: stages.update({name: fidelity(name, compressed)}))
                rows.append({"weights": args.weights, "bits": args.bits, "images": len(tuning), "epochs": args.epochs,
                             "lr": lr, "stages": stages, "seconds": round(time.perf_counter() - start)})
                print(json.dumps(rows[-1]), flush=True)
                write(None)  # every finished row is kept if the run is stopped
    write(other.cores)
    print(format_table(
        ["images", "lr", "k-means agreement %", "least squares %", "distilled %", "KL least squares", "KL distilled"],
        [[r["images"], r["lr"], *(f"{r['stages'][s]['agreement']:.2f}" for s in ("k-means", "least-squares",
                                                                               "fine-tuned")),
          *(f"{r['stages'][s]['mean_kl']:.4f}" for s in ("least-squares", "fine-tuned"))] for r in rows]))


if __name__ == "__main__":
    main()

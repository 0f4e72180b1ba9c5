"""Size-fidelity curve of Deep Compression weight sharing, 3..8 bits, for SqueezeNet v1.0 (the published
Deep Compression file) and squeezenet1_1 (torchvision weights, dense).

For every bit width the weights are re-shared (exact 1-D k-means, Han et al. 2016 Sec. 3), then refined
by least squares on calibration images (CIFAR-10 *train* images + scikit-image photos, disjoint from the
evaluation set), coded to an in-memory ``.sqz`` (exact file size) and compared with the uncompressed
model on the standard fidelity set (CIFAR-10 test images + the 100 ImageNet samples; see
:mod:`squeezelab.compress.fidelity`): top-1 agreement, mean KL and top-1 on the 100 labelled images.
k-means alone is measured too, so the gain of the refinement shows. JSON after every row.

    nice -n 10 .venv/bin/python benchmarks/compression_curve.py --data ../shared/data --limit 2000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from squeezelab.compress.fidelity import collect_logits, compare, standard_images
from squeezelab.data.sources import cifar10_split
from squeezelab.compress.measure import skimage_photos
from squeezelab.compress.pipeline import compress_model
from squeezelab.export.timing import machine_info
from squeezelab.io import atomic_write_text
from squeezelab.tables import format_table
from squeezelab.weights.loader import load_weights, model_from_state

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
#: SqueezeNet paper Table 2: Deep Compression of SqueezeNet v1.0 (33% dense) at 8 and 6 bits.
PAPER_MB = {("squeezenet1_0.deep_compression", 8): 0.66, ("squeezenet1_0.deep_compression", 6): 0.47}


def table(rows: list[dict]) -> str:
    return format_table(
        ["weights", "bits", "refine", "MB", "paper MB", "agreement %", "mean KL", "top-1 % (100 labelled)"],
        [[r["weights"], r["bits"], r["refine"], f"{r['bytes'] / 1e6:.3f}", r.get("paper_mb") or "",
          f"{r['agreement']:.2f}", f"{r['mean_kl']:.4f}", f"{r['top1_parent']:.0f} -> {r['top1_child']:.0f}"]
         for r in rows], markdown=True)


def calibration_images(preprocess, data_dir: str, count: int) -> list:
    """The least-squares calibration set: the scikit-image photos + ``count`` evenly spaced CIFAR-10 *train*
    images (disjoint from the standard set's test images)."""
    return skimage_photos() + cifar10_split(data_dir, "train").subset(count).decoded()


def child_fidelity(meta, compressed, parent_logits: torch.Tensor, labels: torch.Tensor, images) -> dict:
    """Agreement, KL and top-1 of a compressed model against its parent's logits on ``images``."""
    child = model_from_state(compressed.state_dict(), meta)
    return compare(parent_logits, collect_logits({"child": child}, images)[0]["child"], labels).as_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="squeezenet1_0.deep_compression,squeezenet1_1.torchvision")
    parser.add_argument("--bits", default="8,7,6,5,4,3")
    parser.add_argument("--data", default=str(SHARED), help="folder with cifar10_*_jpeg.zip and images/")
    parser.add_argument("--limit", type=int, help="CIFAR-10 test images (default all 10,000)")
    parser.add_argument("--calibration", type=int, default=32, help="CIFAR-10 train images for calibration")
    parser.add_argument("--kmeans-bits", default="6", help="bit widths also measured with k-means alone")
    parser.add_argument("--json", default="benchmarks/results/compression_fidelity.json")
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

    rows: list[dict] = []
    kmeans_bits = {int(b) for b in args.kmeans_bits.split(",") if b}
    for spec in args.weights.split(","):
        state, meta = load_weights(spec)
        images = standard_images(meta.preprocess, data_dir=args.data, limit=args.limit)
        calibration = calibration_images(meta.preprocess, args.data, args.calibration)
        parent = model_from_state(state, meta)
        start = time.perf_counter()
        out, labels = collect_logits({"parent": parent}, images)
        parent_logits = out["parent"]
        print(f"{spec}: uncompressed on {len(images):,} images in {time.perf_counter() - start:.0f} s", flush=True)
        for bits in (int(b) for b in args.bits.split(",")):
            for refine in (["k-means"] if bits in kmeans_bits else []) + ["least-squares"]:
                start = time.perf_counter()
                report = compress_model(state, meta, bits=bits,
                                        calibration=calibration if refine == "least-squares" else None)
                fid = child_fidelity(meta, report.compressed, parent_logits, labels, images)
                rows.append({"weights": spec, "bits": bits, "refine": refine, "bytes": report.file_bytes,
                             "paper_mb": PAPER_MB.get((spec, bits)), **fid,
                             "seconds": round(time.perf_counter() - start, 1)})
                print(table(rows[-1:]).splitlines()[-1], flush=True)
                payload = {"data": args.data, "cifar_test_images": args.limit or 10_000,
                           "calibration": f"{len(calibration)} images: scikit-image photos + CIFAR-10 train",
                           "machine": machine_info(), "rows": rows}
                atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()

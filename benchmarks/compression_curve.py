"""Size / accuracy curve of Deep Compression without retraining (density x bits).

For every density (magnitude pruning per layer, no fine-tuning) and codebook
width, compress the weights to a ``.sqz`` in memory, decode it and measure
top-1/top-5 on an image folder (default: the 100 ImageNet samples). Prints a
table and writes JSON. Sizes are exact ``.sqz`` file sizes.

    nice -n 10 .venv/bin/python benchmarks/compression_curve.py \
        --weights squeezenet1_1.torchvision --json benchmarks/results/compression_curve.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from squeezelab.compress.deep import compress_state_dict
from squeezelab.compress.measure import ImageSet, folder_images, skimage_photos
from squeezelab.compress.pipeline import MIB, compress_model
from squeezelab.compress.prune import apply_masks, magnitude_masks
from squeezelab.io import atomic_write_text
from squeezelab.tables import format_table
from squeezelab.weights.loader import load_weights

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def write(args: argparse.Namespace, images: ImageSet, dense_bytes: int, rows: list[dict], quiet: bool = False
          ) -> None:
    """Write the JSON (after every point, so an interrupted run keeps its rows) and print the table."""
    payload = {"weights": str(args.weights), "data": args.data, "images": len(images.labels),
               "method": args.method, "calibration": args.calibration, "torch": torch.__version__,
               "machine": platform.machine(), "rows": rows}
    atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    if quiet:
        return
    print(format_table(["density", "bits", "bytes", "MiB", "vs fp32", "top-1 %", "top-5 %", "stage"],
                       [[f"{r['density']:.2f}", r["bits"], r["bytes"], f"{r['bytes'] / MIB:.3f}",
                         f"{dense_bytes / r['bytes']:.1f}x", f"{r['top1']:.0f}", f"{r['top5']:.0f}", r["stage"]]
                        for r in rows], markdown=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="squeezenet1_1.torchvision")
    parser.add_argument("--data", default=str(SHARED / "images" / "imagenet_samples_100"))
    parser.add_argument("--densities", default="1.0,0.3,0.5,0.7")
    parser.add_argument("--bits", default="8,4,6,5")
    parser.add_argument("--method", default="optimal", choices=("optimal", "linear"))
    parser.add_argument("--calibration", default="skimage", help="bias-correction images: 'skimage' (the default, "
                        "scikit-image's photos), a folder, or 'none'")
    parser.add_argument("--json", default="benchmarks/results/compression_curve.json")
    args = parser.parse_args()

    state, meta = load_weights(args.weights)
    calibration = None if args.calibration == "none" else (
        skimage_photos() if args.calibration == "skimage" else folder_images(args.calibration, 32))
    images = ImageSet.load(args.data, meta)
    model = meta.build_model().eval()
    model.load_state_dict(state)
    dense_bytes = 4 * sum(v.numel() for v in state.values())
    top1, top5 = images.accuracy(model)
    rows = [{"density": 1.0, "bits": 32, "bytes": dense_bytes, "top1": top1, "top5": top5, "stage": "dense fp32"}]
    for density in (float(d) for d in args.densities.split(",")):
        masks = magnitude_masks(state, density)
        if density < 1.0:
            pruned = {k: v.clone() for k, v in state.items()}
            apply_masks(pruned, masks)
            model.load_state_dict(pruned)
            top1, top5 = images.accuracy(model)
            size = compress_state_dict(state, bits=8, masks=masks, method="linear").stage_sizes()[1][1]
            rows.append({"density": density, "bits": 32, "bytes": size, "top1": top1, "top5": top5,
                         "stage": "pruned fp32 (sparse, relative index)"})
        for bits in (int(b) for b in args.bits.split(",")):
            start = time.perf_counter()
            report = compress_model(state, meta, bits=bits, masks=masks, method=args.method, calibration=calibration)
            model.load_state_dict(report.compressed.state_dict())
            top1, top5 = images.accuracy(model)
            rows.append({"density": round(report.compressed.density, 4), "bits": bits, "bytes": report.file_bytes,
                         "top1": top1, "top5": top5, "stage": ".sqz (pruned + shared + Huffman)",
                         "seconds": round(time.perf_counter() - start, 1)})
            print(f"density {density} bits {bits}: {report.file_bytes:,} B, top-1 {top1:.0f}", flush=True)
            write(args, images, dense_bytes, rows, quiet=True)
    write(args, images, dense_bytes, rows)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

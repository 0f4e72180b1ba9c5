"""What the resize filter does to the three registered weights: PIL antialiased vs OpenCV-style bilinear.

    nice -n 10 .venv/bin/python benchmarks/resize_antialias.py --json benchmarks/results/resize_antialias.json

For each entry, its registered preprocessing is run twice, once with ``antialias=True`` (PIL's
filter, what every entry used before the per-entry configs) and once with ``antialias=False``
(OpenCV ``INTER_LINEAR`` semantics, what the Caffe weights were trained with). It reports top-1 /
top-5 on ``shared/data/images/imagenet_samples_100`` (downscaling) and the top-1 agreement of the two
on the first ``--cifar`` CIFAR-10 test JPEGs (32x32, so the resize upscales).
"""

from __future__ import annotations

import argparse
import io
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image

from squeezelab.export.timing import machine_info
from squeezelab.inference.evaluate import evaluate
from squeezelab.io import atomic_write_text
from squeezelab.tables import format_table
from squeezelab.weights.loader import build_model
from squeezelab.weights.registry import list_weights

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def cifar_images(zip_path: Path, count: int) -> list[Image.Image]:
    """The first ``count`` test JPEGs in sorted member order (airplane 0000.jpg, ...)."""
    with zipfile.ZipFile(zip_path) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))[:count]
        return [Image.open(io.BytesIO(archive.read(n))).convert("RGB") for n in names]


@torch.inference_mode()
def top1(model: torch.nn.Module, preprocess, images: list[Image.Image], batch: int = 100) -> torch.Tensor:
    return torch.cat([model(torch.stack([preprocess(im) for im in images[i:i + batch]])).argmax(1)
                      for i in range(0, len(images), batch)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, default=SHARED / "images" / "imagenet_samples_100")
    parser.add_argument("--cifar-zip", type=Path, default=SHARED / "cifar10_test_jpeg.zip")
    parser.add_argument("--cifar", type=int, default=2000, help="how many CIFAR-10 test images")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cifar = cifar_images(args.cifar_zip, args.cifar)
    results, rows = {}, []
    for name in list_weights():
        model = build_model(name)
        meta = model.pretrained_cfg
        row: dict[str, object] = {"registered": meta.preprocess.describe()}
        preds = {}
        for antialias in (True, False):
            pre = replace(meta.preprocess, antialias=antialias)
            model.pretrained_cfg = replace(meta, preprocess=pre)
            scores = evaluate(model, args.samples, batch_size=50, workers=0)
            key = "pil_antialias" if antialias else "opencv_bilinear"
            row[key] = {"top1": scores["top1"], "top5": scores["top5"]}
            preds[antialias] = top1(model, pre, cifar)
        model.pretrained_cfg = meta
        row["cifar_top1_agreement"] = 100.0 * float((preds[True] == preds[False]).float().mean())
        results[name] = row
        rows.append([name, f"{row['pil_antialias']['top1']:.0f} / {row['pil_antialias']['top5']:.0f}",
                     f"{row['opencv_bilinear']['top1']:.0f} / {row['opencv_bilinear']['top5']:.0f}",
                     f"{row['cifar_top1_agreement']:.2f}%"])
        print(rows[-1], flush=True)
    print(format_table(["weights", "PIL antialias top-1/5", "OpenCV bilinear top-1/5",
                        f"CIFAR-10 top-1 agreement ({len(cifar)})"], rows, markdown=True))
    if args.json:
        atomic_write_text(args.json, json.dumps({"samples": str(args.samples), "cifar_images": len(cifar),
                                                 "machine": machine_info(), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()

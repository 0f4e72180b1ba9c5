"""squeezenet1_1.caffe INT8 variants (issue 29): which layers stay fp32, activation ranges, calibration images.

    nice -n 10 .venv/bin/python benchmarks/int8_caffe_variants.py --json benchmarks/results/int8_caffe_variants.json

Each variant is ``squeezelab.compress.int8.quantize_int8`` with the keywords in ``VARIANTS`` (1 thread, U8S8,
``reduce_range=False``), calibrated on ``photo_crops`` of the 9 photos (64 unless stated) or, for ``mix``, the
6 scikit-image photos + 58 CIFAR-10 *train* images. Evaluated against the fp32 PyTorch model: top-1 on the
100 labelled ImageNet samples, top-1 agreement and mean KL on those 100 and on them + ``--limit`` CIFAR-10
*test* images upscaled to 227 px (unlabelled for an ImageNet model). No timing: ``int8_latency.py`` times
the recipes that matter. About 1 minute per variant on one idle core, 3 with 256 calibration images.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from squeezelab.compress.fidelity import collect_logits, compare
from squeezelab.compress.int8 import quantize_int8
from squeezelab.compress.measure import photo_crops, skimage_photos
from squeezelab.data.sources import cifar10_split, folder_images
from squeezelab.export.runtime import OnnxRuntimeModule
from squeezelab.io import atomic_write_text
from squeezelab.tables import format_table
from squeezelab.weights import build_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
NEAREST = dict(equalize=0.0, rounding="nearest", bias_correction=False)
#: name -> (quantize_int8 keywords, calibration: "photos" or "mix", calibration images)
VARIANTS = {
    "nearest, all INT8": (dict(**NEAREST, fp32_convs=()), "photos", 64),
    "nearest, first+last fp32": (dict(**NEAREST, fp32_convs=(0, -1)), "photos", 64),
    "ptq, all INT8": (dict(fp32_convs=()), "photos", 64),
    "ptq, first fp32": (dict(fp32_convs=(0,)), "photos", 64),
    "ptq, last fp32": (dict(fp32_convs=(-1,)), "photos", 64),
    "ptq, first+last fp32": (dict(fp32_convs=(0, -1)), "photos", 64),
    "ptq, all INT8, minmax": (dict(fp32_convs=(), method="minmax"), "photos", 64),
    "ptq, first+last fp32, minmax": (dict(fp32_convs=(0, -1), method="minmax"), "photos", 64),
    "ptq, all INT8, 256 crops": (dict(fp32_convs=()), "photos", 256),
    "ptq, first+last fp32, 256 crops": (dict(fp32_convs=(0, -1)), "photos", 256),
    "ptq, all INT8, mix": (dict(fp32_convs=()), "mix", 64),
    "ptq, first+last fp32, mix": (dict(fp32_convs=(0, -1)), "mix", 64),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED), help="folder with the CIFAR-10 zips and images/")
    parser.add_argument("--limit", type=int, default=2000, help="CIFAR-10 test images (default 2,000)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--json", default="benchmarks/results/int8_caffe_variants.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = Path(args.data)
    model = build_model("squeezenet1_1.caffe")
    preprocess = model.pretrained_cfg.require_preprocess("calibration")
    photos = skimage_photos() + folder_images(data / "images" / "photos").decoded()
    images = (folder_images(data / "images" / "imagenet_samples_100")
              + cifar10_split(data, "test").subset(args.limit).unlabelled()).batches(preprocess, batch_size=50)
    reference, labels = collect_logits({"fp32": model}, images)
    labelled = labels >= 0
    rows = []
    for name in args.variants:
        options, kind, count = VARIANTS[name]
        calibration = (photo_crops(photos, count) if kind == "photos"
                       else skimage_photos() + cifar10_split(data, "train").subset(58).decoded())
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            path = quantize_int8(model, Path(tmp) / "int8.onnx", calibration, max_images=count, reduce_range=False,
                                 **options)
            logits, _ = collect_logits({"int8": OnnxRuntimeModule(path, threads=1)}, images)
        everything = compare(reference["fp32"], logits["int8"], labels)
        samples = compare(reference["fp32"][labelled], logits["int8"][labelled], labels[labelled])
        rows.append({"variant": name, "options": {k: list(v) if isinstance(v, tuple) else v
                                                  for k, v in options.items()},
                     "calibration": f"{count} {kind}", "seconds": round(time.perf_counter() - start),
                     "top1_fp32": samples.top1_parent, "top1_int8": samples.top1_child,
                     "agreement_100": samples.agreement, "kl_100": samples.mean_kl,
                     "agreement_all": everything.agreement, "kl_all": everything.mean_kl, "n_all": everything.n})
        print(json.dumps(rows[-1]), flush=True)
    print(format_table(["variant", "top-1 (100)", "agree % (100)", "KL (100)", f"agree % ({len(labels)})",
                        f"KL ({len(labels)})"],
                       [[r["variant"], f"{r['top1_fp32']:.0f} -> {r['top1_int8']:.0f}", f"{r['agreement_100']:.0f}",
                         f"{r['kl_100']:.4f}", f"{r['agreement_all']:.2f}", f"{r['kl_all']:.4f}"] for r in rows],
                       markdown=True))
    atomic_write_text(args.json, json.dumps({"limit": args.limit, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

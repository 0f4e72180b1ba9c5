"""Where INT8 loses agreement with fp32: each layer's weights and each activation quantized alone.

    nice -n 10 .venv/bin/python benchmarks/int8_sensitivity.py --json benchmarks/results/int8_sensitivity.json

PyTorch fake quantization with the scheme of :mod:`squeezelab.compress.int8`:
symmetric int8 weights per output channel (scale = max|w| / 127) and uint8
activations per tensor (range [0, 99.99th percentile] of the calibration images'
ReLU outputs, the same photos + CIFAR-10 *train* images as ``int8_latency.py``).
Every variant is compared with the fp32 parent on the standard set
(:func:`squeezelab.compress.fidelity.standard_images`). Two references put the
numbers in scale: the parent's weights stored as bfloat16 or float16 (8 and 11
significant bits, no clipping), and the parent's own top-1/top-2 logit gap, which
decides how little noise flips a prediction on these images (docs/compression.md).
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from int8_latency import SHARED
from squeezelab.compress.fidelity import compare, standard_images
from squeezelab.compress.int8 import PERCENTILE
from squeezelab.compress.measure import skimage_photos
from squeezelab.data.sources import cifar10_split, pil_images
from squeezelab.export.timing import machine_info
from squeezelab.io import atomic_write_text
from squeezelab.tables import format_table
from squeezelab.weights.loader import build_model

#: Logit gaps at which the share of images is reported.
GAPS = (0.05, 0.1, 0.2, 0.5, 1.0)


def quantize_weights(model: nn.Module, only: int | None = None, cast: torch.dtype | None = None) -> nn.Module:
    """A copy with conv weights rounded to int8 per output channel (all, or conv number ``only``),
    or cast to ``cast`` and back (bf16 / fp16 references)."""
    model = copy.deepcopy(model)
    for index, conv in enumerate(m for m in model.modules() if isinstance(m, nn.Conv2d)):
        if only is not None and index != only:
            continue
        w = conv.weight.data
        if cast is not None:
            conv.weight.data = w.to(cast).float()
            continue
        scale = w.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12) / 127
        conv.weight.data = (w / scale).round().clamp(-127, 127) * scale
    return model


def activation_ranges(model: nn.Module, calibration) -> list[float]:
    """The PERCENTILE-th percentile of each ReLU's output over the calibration images (ORT's 'percentile')."""
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    values: list[list[torch.Tensor]] = [[] for _ in relus]
    hooks = [r.register_forward_hook(lambda m, i, out, k=k: values[k].append(out.detach().flatten()))
             for k, r in enumerate(relus)]
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for images, _ in calibration:
            model(images)
    for hook in hooks:
        hook.remove()
    ranges = []
    for chunks in values:
        flat = torch.cat(chunks)
        sample = flat[torch.randperm(len(flat), generator=generator)[:4_000_000]]
        ranges.append(float(torch.quantile(sample.double(), PERCENTILE / 100)))
    return ranges


def run_quantized(model: nn.Module, images: torch.Tensor, ranges: list[float], which: list[int]) -> torch.Tensor:
    """Logits with the ReLU outputs numbered ``which`` fake-quantized to uint8 over [0, range]."""
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]

    def fake_quant(k: int) -> Callable:
        scale = ranges[k] / 255
        return lambda m, i, out: (out / scale).round().clamp(0, 255) * scale

    hooks = [relus[k].register_forward_hook(fake_quant(k)) for k in which]
    with torch.no_grad():
        logits = torch.cat([model(chunk) for chunk in images.split(100)])
    for hook in hooks:
        hook.remove()
    return logits


def study(weights: str, args: argparse.Namespace) -> dict:
    model = build_model(weights)
    meta = model.pretrained_cfg
    model.eval()
    calibration = (pil_images(skimage_photos()) + cifar10_split(args.data, "train").subset(
        args.calibration_images).unlabelled()).batches(meta.preprocess)
    ranges = activation_ranges(model, calibration)
    batches = list(standard_images(meta.preprocess, data_dir=args.data, limit=args.limit, batch_size=100))
    images, labels = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    parent = run_quantized(model, images, ranges, [])
    top2 = parent.topk(2, dim=1).values
    gap = top2[:, 0] - top2[:, 1]
    all_acts = list(range(len(ranges)))

    def measure(logits: torch.Tensor) -> dict:
        f = compare(parent, logits, labels)
        return {**f.as_dict(), "logit_error_std": float((logits - parent).std())}

    variants = {
        "weights bf16": measure(run_quantized(quantize_weights(model, cast=torch.bfloat16), images, ranges, [])),
        "weights fp16": measure(run_quantized(quantize_weights(model, cast=torch.float16), images, ranges, [])),
        "weights int8": measure(run_quantized(quantize_weights(model), images, ranges, [])),
        "activations uint8": measure(run_quantized(model, images, ranges, all_acts)),
        "weights int8 + activations uint8": measure(run_quantized(quantize_weights(model), images, ranges, all_acts)),
    }
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    per_layer = [{"conv": name,
                  "weights_only": measure(run_quantized(quantize_weights(model, only=k), images, ranges, [])),
                  "activation_only": measure(run_quantized(model, images, ranges, [k])),
                  "activation_range": ranges[k]}
                 for k, name in enumerate(convs) if k < len(ranges)]
    return {"weights": weights, "images": len(images), "parent_logit_gap_below": {
        str(g): float((gap < g).double().mean()) for g in GAPS}, "parent_logit_gap_median": float(gap.median()),
        "variants": variants, "per_layer": per_layer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="+", default=["squeezenet1_1.torchvision", "squeezenet1_0.deep_compression"])
    parser.add_argument("--data", default=str(SHARED), help="folder with cifar10_test_jpeg.zip and images/")
    parser.add_argument("--limit", type=int, default=400, help="CIFAR-10 test images in the set (default 400)")
    parser.add_argument("--calibration-images", type=int, default=58, help="CIFAR-10 train images added to the photos")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default="benchmarks/results/int8_sensitivity.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    records = [study(w, args) for w in args.weights]
    for record in records:
        gaps = ", ".join(f"{100 * v:.1f}% below {g}" for g, v in record["parent_logit_gap_below"].items())
        print(f"\n{record['weights']} on {record['images']} images; parent top-1/top-2 logit gap: {gaps}")
        rows = [[name, f"{v['agreement']:.2f}", f"{v['mean_kl']:.4f}", f"{v['logit_error_std']:.3f}"]
                for name, v in record["variants"].items()]
        rows += [[f"{layer['conv']}: weights / activation",
                  f"{layer['weights_only']['agreement']:.1f} / {layer['activation_only']['agreement']:.1f}",
                  f"{layer['weights_only']['mean_kl']:.4f} / {layer['activation_only']['mean_kl']:.4f}",
                  f"{layer['weights_only']['logit_error_std']:.3f} / {layer['activation_only']['logit_error_std']:.3f}"]
                 for layer in record["per_layer"]]
        print(format_table(["quantized", "agree %", "KL", "logit error std"], rows, markdown=True))
    payload = {"machine": machine_info(), "threads": args.threads,
               "fidelity_set": f"CIFAR-10 test ({args.limit}) + 100 ImageNet samples", "records": records}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

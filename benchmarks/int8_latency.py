"""INT8 (ONNX Runtime static QDQ) vs fp32: top-1 on an image folder and batch-1 / batch-N latency.

    nice -n 10 .venv/bin/python benchmarks/int8_latency.py --json benchmarks/results/int8_latency.json

Calibration uses scikit-image's sample photos (disjoint from the evaluation
folder) unless ``--calibration DIR`` is given. Latency is the median of at least
``--runs`` timed calls per variant, timed in interleaved blocks like ``squeezelab
bench`` (:func:`squeezelab.export.timing.interleaved`), with ``--threads``
intra-op threads and ONNX Runtime's spinning threads on for both ORT variants.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from squeezelab.compress.int8 import quantize_int8
from squeezelab.compress.measure import ImageSet, skimage_photos
from squeezelab.export.onnx import export_onnx
from squeezelab.export.runtime import OnnxRuntimeModule
from squeezelab.export.timing import interleaved, rounds_for
from squeezelab.io import atomic_write_text
from squeezelab.tables import format_table
from squeezelab.weights.loader import load_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def latencies_ms(variants: dict[str, torch.nn.Module], x: torch.Tensor, runs: int) -> dict[str, float]:
    """Median ms per call of each variant on ``x``, interleaved in blocks."""
    with torch.inference_mode():
        times = interleaved({n: (lambda m=m: m(x)) for n, m in variants.items()}, reps=rounds_for(runs),
                            warmup=2)
    return {n: 1000 * t.median for n, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="squeezenet1_1.torchvision")
    parser.add_argument("--data", default=str(SHARED / "images" / "imagenet_samples_100"))
    parser.add_argument("--calibration", help="folder of calibration images (default: scikit-image photos)")
    parser.add_argument("--method", default="minmax", choices=("minmax", "entropy", "percentile"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--json", default="benchmarks/results/int8_latency.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, meta = load_model(args.weights)
    images = ImageSet.load(args.data, meta)
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = export_onnx(model, Path(tmp) / "fp32.onnx", input_size=meta.preprocess.crop, meta=meta)
        int8_path = quantize_int8(model, meta, Path(tmp) / "int8.onnx", args.calibration or skimage_photos(),
                                  method=args.method)
        variants = {"torch fp32": model,
                    "ORT fp32": OnnxRuntimeModule(fp32_path, threads=args.threads, spinning=True),
                    "ORT int8": OnnxRuntimeModule(int8_path, threads=args.threads, spinning=True)}
        sizes = {"torch fp32": None, "ORT fp32": fp32_path.stat().st_size, "ORT int8": int8_path.stat().st_size}
        ones = latencies_ms(variants, images.images[:1], args.runs)
        manys = latencies_ms(variants, images.images[:args.batch], max(5, args.runs // 3))
        rows, results = [], {}
        for name, net in variants.items():
            top1, top5 = images.accuracy(net)
            one, many = ones[name], manys[name]
            results[name] = {"top1": top1, "top5": top5, "latency_ms_batch1": one,
                             f"latency_ms_batch{args.batch}": many, "file_bytes": sizes[name]}
            rows.append([name, f"{top1:.0f}", f"{top5:.0f}", f"{one:.2f}", f"{many:.1f}",
                         f"{sizes[name]:,}" if sizes[name] else "-"])
    base = results["ORT fp32"]
    for name in results:
        results[name]["speedup_vs_ort_fp32_batch1"] = base["latency_ms_batch1"] / results[name]["latency_ms_batch1"]
    print(format_table(["model", "top-1 %", "top-5 %", "ms batch 1", f"ms batch {args.batch}", "bytes"], rows,
                       markdown=True))
    print(f"INT8 / fp32 (ORT) latency ratio, batch 1: "
          f"{results['ORT int8']['latency_ms_batch1'] / base['latency_ms_batch1']:.2f}")
    payload = {"weights": args.weights, "data": args.data, "threads": args.threads, "method": args.method,
               "machine": platform.machine(), "processor": platform.processor(), "numpy": np.__version__,
               "results": results}
    atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

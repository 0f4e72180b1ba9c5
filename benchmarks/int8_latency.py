"""INT8 (ONNX Runtime static QDQ) vs fp32 ONNX Runtime: latency at batch 1 and 32, fidelity on the standard set.

    nice -n 10 .venv/bin/python benchmarks/int8_latency.py --json benchmarks/results/int8_latency.json

For each ``--weights`` entry it builds the fp32 ONNX model, the INT8 model of
``squeezelab.compress.int8`` (U8S8) and, for comparison, the U8U8 model the
project shipped before (unsigned weights, MinMax ranges, quantized pooling). All
three run in ONNX Runtime sessions with the same options (``--threads`` intra-op
threads, spinning on) and are timed in interleaved blocks
(:func:`squeezelab.export.timing.interleaved`); the CPU time other processes used
meanwhile is recorded (:class:`~squeezelab.export.timing.OtherLoad`), with the CPU's
INT8 flags. Calibration uses scikit-image's photos plus CIFAR-10 *train* images;
fidelity (top-1 agreement and KL against fp32) uses the standard set
(:func:`squeezelab.compress.fidelity.standard_images`: CIFAR-10 *test* + the 100
ImageNet samples), so the two never overlap.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import zipfile
from pathlib import Path

import torch
from PIL import Image

from squeezelab.compress.fidelity import collect_logits, compare, standard_images
from squeezelab.compress.int8 import _Reader, quantize_int8
from squeezelab.compress.measure import skimage_photos
from squeezelab.export.onnx import INPUT_NAME, export_onnx
from squeezelab.export.runtime import OnnxRuntimeModule
from squeezelab.export.timing import OtherLoad, interleaved, machine_info, rounds_for
from squeezelab.io import atomic_write_text
from squeezelab.tables import format_table
from squeezelab.weights.loader import load_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def cifar_train(count: int) -> list[Image.Image]:
    """``count`` evenly spaced CIFAR-10 training images (disjoint from the standard set's test images)."""
    with zipfile.ZipFile(SHARED / "cifar10_train_jpeg.zip") as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))
        step = len(names) // count
        return [Image.open(io.BytesIO(archive.read(n))).convert("RGB") for n in names[::step][:count]]


def quantize_u8u8(fp32: Path, output: Path, images: list[Image.Image], meta) -> Path:
    """The previous recipe, for comparison: u8 per-channel weights, MinMax ranges, everything quantized."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = output.with_suffix(".prep.onnx")
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    quantize_static(str(prepared), str(output), _Reader(images, meta, INPUT_NAME), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    return output


def timed(variants: dict[str, OnnxRuntimeModule], x: torch.Tensor, runs: int) -> tuple[dict[str, float], float]:
    """(median ms per call of each variant on ``x``, cores other processes kept busy meanwhile)."""
    with OtherLoad() as other, torch.inference_mode():
        times = interleaved({n: (lambda m=m: m(x)) for n, m in variants.items()}, reps=rounds_for(runs), warmup=2)
    return {n: 1000 * t.median for n, t in times.items()}, other.cores


def bench(weights: str, args: argparse.Namespace) -> dict:
    model, meta = load_model(weights)
    calibration = skimage_photos() + cifar_train(args.calibration_images)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, Path(tmp) / "fp32.onnx", input_size=meta.preprocess.crop, meta=meta)
        paths = {"fp32": fp32,
                 "int8 U8U8 (before)": quantize_u8u8(fp32, Path(tmp) / "u8u8.onnx", calibration, meta),
                 "int8 U8S8": quantize_int8(model, meta, Path(tmp) / "int8.onnx", calibration,
                                            max_images=len(calibration))}
        variants = {n: OnnxRuntimeModule(p, threads=args.threads, spinning=True) for n, p in paths.items()}
        sizes = {n: p.stat().st_size for n, p in paths.items()}
    crop = meta.preprocess.crop
    results = {n: {"file_bytes": sizes[n]} for n in variants}
    loads = {}
    for batch, runs in ((1, args.runs), (32, max(20, args.runs // 2))):
        ms, loads[f"batch{batch}"] = timed(variants, torch.randn(batch, 3, crop, crop), runs)
        for n in variants:
            results[n][f"ms_batch{batch}"] = ms[n]
            results[n][f"speedup_batch{batch}"] = ms["fp32"] / ms[n]
    if args.fidelity:
        images = standard_images(meta.preprocess, data_dir=args.data, limit=args.limit, batch_size=50)
        with OtherLoad() as other:
            logits, labels = collect_logits(variants, images)
        loads["fidelity"] = other.cores
        for n in variants:
            results[n]["fidelity"] = compare(logits["fp32"], logits[n], labels).as_dict()
    return {"weights": weights, "input": crop, "calibration_images": len(calibration), "results": results,
            "other_load_cores": loads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="+", default=["squeezenet1_1.torchvision", "squeezenet1_0.deep_compression"])
    parser.add_argument("--data", default=str(SHARED), help="folder with cifar10_test_jpeg.zip and images/")
    parser.add_argument("--limit", type=int, help="CIFAR-10 test images in the fidelity set (default all 10,000)")
    parser.add_argument("--no-fidelity", dest="fidelity", action="store_false", help="time only")
    parser.add_argument("--calibration-images", type=int, default=58, help="CIFAR-10 train images added to the photos")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=40, help="timed calls per variant at batch 1 (half at batch 32)")
    parser.add_argument("--json", default="benchmarks/results/int8_latency.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    records = [bench(w, args) for w in args.weights]
    rows = []
    for record in records:
        for name, r in record["results"].items():
            f = r.get("fidelity")
            fidelity = (f"{f['agreement']:.2f}", f"{f['mean_kl']:.4f}", f"{f['top1_child']:.0f}") if f else ("-",) * 3
            rows.append([record["weights"], name, f"{r['ms_batch1']:.2f}", f"{r['speedup_batch1']:.2f}x",
                         f"{r['ms_batch32']:.1f}", f"{r['speedup_batch32']:.2f}x", *fidelity, f"{r['file_bytes']:,}"])
    print(format_table(["weights", "model", "ms b1", "vs fp32", "ms b32", "vs fp32", "agree %", "KL", "top-1 %",
                        "bytes"], rows, markdown=True))
    for record in records:
        print(f"{record['weights']}: other processes kept "
              + ", ".join(f"{v:.2f} cores busy during {k}" for k, v in record["other_load_cores"].items()))
    fidelity_set = f"CIFAR-10 test ({args.limit or 10000}) + 100 ImageNet samples" if args.fidelity else None
    payload = {"machine": machine_info(), "threads": args.threads, "spinning": True,
               "fidelity_set": fidelity_set, "records": records}
    atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

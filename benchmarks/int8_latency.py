"""INT8 (ONNX Runtime static QDQ) against fp32 ONNX Runtime: top-1 on each weights' own data, fidelity, latency.

    nice -n 10 .venv/bin/python benchmarks/int8_latency.py --json benchmarks/results/int8_latency.json

For each ``--weights`` entry, built by ``squeezelab.build_model`` and fed as its ``pretrained_cfg`` says
(RGB 0-1 for ``.torchvision``, BGR 0-255 at 227 px for ``.caffe``, 32 px for ``.cifar10``), it writes the
fp32 ONNX model and one INT8 model per recipe of ``squeezelab.compress.int8.quantize_int8``:

- ``nearest``: ONNX Runtime's quantization alone (round to nearest, no equalisation, no bias
  correction, every convolution INT8): the recipe before issue 29;
- ``all int8``: activation equalisation + output-error rounding + bias correction (``compress/ptq.py``),
  every convolution INT8;
- ``default``: the same with the classifier (last) convolution in fp32 (``FP32_CONVS``);
- with ``--ablations`` also each of the three steps alone (every convolution INT8).

Calibration (64 images, never evaluated): ImageNet weights the 9 photos (6 scikit-image + shared/data/images/
photos) and random crops of them (``--calibration photos``, :func:`squeezelab.compress.measure.photo_crops`) or
the 6 scikit-image photos + 58 CIFAR-10 *train* images (``--calibration mix``), CIFAR-10 weights 64 CIFAR-10
*train* images. Evaluation, on the weights' own data:
ImageNet weights top-1 on the 100 labelled ImageNet samples, plus top-1 agreement and mean KL with fp32
on those and ``--limit`` CIFAR-10 *test* images upscaled by the weights' preprocessing (unlabeled for
them); CIFAR-10 weights top-1, agreement and KL on ``--limit`` CIFAR-10 test images (default all
10,000). Latency: interleaved blocks at batch 1 and 32 (:func:`squeezelab.export.timing.interleaved`),
with the CPU time other processes used meanwhile (:class:`~squeezelab.export.timing.OtherLoad`).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from squeezelab.compress.fidelity import collect_logits, compare
from squeezelab.compress.int8 import EQUALIZE_ALPHA, FP32_CONVS, quantize_int8
from squeezelab.compress.measure import photo_crops, skimage_photos
from squeezelab.data.sources import Batches, cifar10_split, folder_images
from squeezelab.export.onnx import export_onnx
from squeezelab.export.runtime import OnnxRuntimeModule
from squeezelab.export.timing import OtherLoad, interleaved, machine_info, rounds_for
from squeezelab.io import atomic_write_text
from squeezelab.tables import format_table
from squeezelab.weights import build_model, get_weights_entry

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CALIBRATION_IMAGES = 64
#: quantize_int8 keywords of each recipe.
RECIPES = {
    "nearest": dict(equalize=0.0, rounding="nearest", bias_correction=False, fp32_convs=()),
    "all int8": dict(equalize=EQUALIZE_ALPHA, rounding="output-error", bias_correction=True, fp32_convs=()),
    "default": dict(equalize=EQUALIZE_ALPHA, rounding="output-error", bias_correction=True, fp32_convs=FP32_CONVS),
}
ABLATIONS = {
    "equalize only": dict(equalize=EQUALIZE_ALPHA, rounding="nearest", bias_correction=False, fp32_convs=()),
    "rounding only": dict(equalize=0.0, rounding="output-error", bias_correction=False, fp32_convs=()),
    "bias correction only": dict(equalize=0.0, rounding="nearest", bias_correction=True, fp32_convs=()),
    "rounding + bias correction": dict(equalize=0.0, rounding="output-error", bias_correction=True, fp32_convs=()),
}


def own_data(weights: str, model: torch.nn.Module, data: Path, limit: int | None, calibration_kind: str
             ) -> tuple[list, Batches, str]:
    """(calibration images, evaluation images, description) for the weights' own kind of data."""
    cfg = model.pretrained_cfg
    cifar_weights = get_weights_entry(weights).dataset == "cifar10"
    if cifar_weights or calibration_kind == "mix":
        photos = [] if cifar_weights else skimage_photos()
        calibration = photos + cifar10_split(data, "train").subset(CALIBRATION_IMAGES - len(photos)).decoded()
    else:
        photos = skimage_photos() + folder_images(data / "images" / "photos").decoded()
        calibration = photo_crops(photos, CALIBRATION_IMAGES)
    test = cifar10_split(data, "test").subset(limit)
    if cifar_weights:
        return calibration, test.batches(cfg.preprocess, 50), f"CIFAR-10 test ({len(test)}, labelled)"
    samples = folder_images(data / "images" / "imagenet_samples_100")
    return (calibration, (samples + test.unlabelled()).batches(cfg.preprocess, 50),
            f"100 ImageNet samples (labelled) + CIFAR-10 test ({len(test)}, unlabeled)")


def timed(variants: dict[str, OnnxRuntimeModule], x: torch.Tensor, runs: int) -> tuple[dict[str, float], float]:
    """(median ms per call of each variant on ``x``, cores other processes kept busy meanwhile)."""
    with OtherLoad() as other, torch.inference_mode():
        times = interleaved({n: (lambda m=m: m(x)) for n, m in variants.items()}, reps=rounds_for(runs), warmup=2)
    return {n: 1000 * t.median for n, t in times.items()}, other.cores


def bench(weights: str, args: argparse.Namespace) -> dict:
    model = build_model(weights)
    cfg = model.pretrained_cfg
    calibration, images, described = own_data(weights, model, Path(args.data), args.limit, args.calibration)
    recipes = {**RECIPES, **(ABLATIONS if args.ablations else {})}
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"fp32": export_onnx(model, Path(tmp) / "fp32.onnx", input_size=cfg.input_size, meta=cfg)}
        for name, options in recipes.items():
            start = time.perf_counter()
            paths[name] = quantize_int8(model, Path(tmp) / f"{len(paths)}.onnx", calibration,
                                        max_images=CALIBRATION_IMAGES, reduce_range=False, **options)
            seconds[name] = time.perf_counter() - start
            print(f"{weights} {name}: quantized in {seconds[name]:.0f} s", flush=True)
        variants = {n: OnnxRuntimeModule(p, threads=args.threads, spinning=True) for n, p in paths.items()}
        sizes = {n: p.stat().st_size for n, p in paths.items()}
    results = {n: {"file_bytes": sizes[n], "quantize_seconds": seconds.get(n)} for n in variants}
    loads = {}
    if args.fidelity:
        with OtherLoad() as other:
            logits, labels = collect_logits(variants, images)
        loads["fidelity"] = other.cores
        labelled = labels >= 0
        for n in variants:
            results[n]["fidelity"] = compare(logits["fp32"], logits[n], labels).as_dict()
            results[n]["fidelity_labelled_only"] = compare(logits["fp32"][labelled], logits[n][labelled],
                                                           labels[labelled]).as_dict()
    if args.runs:
        size = cfg.input_size
        for batch, runs in ((1, args.runs), (32, max(10, args.runs // 2))):
            ms, loads[f"batch{batch}"] = timed(variants, torch.randn(batch, cfg.in_chans, size, size), runs)
            for n in variants:
                results[n][f"ms_batch{batch}"] = ms[n]
                results[n][f"speedup_batch{batch}"] = ms["fp32"] / ms[n]
    return {"weights": weights, "input": cfg.input_size, "preprocess": cfg.preprocess.describe(),
            "calibration_images": len(calibration), "evaluation": described, "results": results,
            "other_load_cores": loads}


def _cells(r: dict) -> list[str]:
    f, own = r.get("fidelity"), r.get("fidelity_labelled_only")
    fidelity = ([f"{own['top1_child']:.2f}", f"{f['agreement']:.2f}", f"{f['mean_kl']:.4f}"] if f
                else ["-"] * 3)
    speed = ([f"{r['ms_batch1']:.2f}", f"{r['speedup_batch1']:.2f}x", f"{r['ms_batch32']:.1f}",
              f"{r['speedup_batch32']:.2f}x"] if "ms_batch1" in r else ["-"] * 4)
    return [*fidelity, *speed, f"{r['file_bytes']:,}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="+",
                        default=["squeezenet1_1.torchvision", "squeezenet1_1.caffe", "squeezenet1_1.cifar10"])
    parser.add_argument("--data", default=str(SHARED), help="folder with the CIFAR-10 zips and images/")
    parser.add_argument("--limit", type=int, help="CIFAR-10 test images evaluated (default all 10,000)")
    parser.add_argument("--calibration", choices=("photos", "mix"), default="photos", help="ImageNet weights: "
                        "crops of the 9 photos (scikit-image + shared/data/images/photos, default) or the 6 "
                        "scikit-image photos + 58 CIFAR-10 train images (mix)")
    parser.add_argument("--ablations", action="store_true", help="also each step of the default recipe alone")
    parser.add_argument("--no-fidelity", dest="fidelity", action="store_false", help="time only")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=40, help="timed calls per variant at batch 1 (half at batch "
                        "32); 0 = no timing")
    parser.add_argument("--json", default="benchmarks/results/int8_latency.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    records = [bench(w, args) for w in args.weights]
    rows = [[record["weights"], name, *_cells(r)] for record in records for name, r in record["results"].items()]
    print(format_table(["weights", "model", "top-1 % (own labels)", "agree %", "KL", "ms b1", "vs fp32", "ms b32",
                        "vs fp32", "bytes"], rows, markdown=True))
    for record in records:
        print(f"{record['weights']}: {record['evaluation']}; other processes kept "
              + ", ".join(f"{v:.2f} cores busy during {k}" for k, v in record["other_load_cores"].items()))
    payload = {"machine": machine_info(), "threads": args.threads, "spinning": True, "limit": args.limit,
               "imagenet_calibration": args.calibration,
               "records": records}
    atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

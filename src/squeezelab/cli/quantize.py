"""``squeezelab quantize``: INT8 post-training static quantization to an ONNX model (ONNX Runtime, QDQ)."""

from __future__ import annotations

import argparse

from ..extras import require
from ..tables import format_table
from ..weights.loader import build_model
from .args import check_outputs, float_range, int_range, refuse_onnx, weights_inputs


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("quantize", help="INT8 post-training quantization (ONNX Runtime QDQ) calibrated on "
                              "an image folder")
    p.add_argument("model", help="model name (checked against the weights' architecture)")
    p.add_argument("--weights", required=True, help="registered name or any weights file")
    p.add_argument("--calibration", required=True, metavar="DIR", help="representative images, no labels: a folder "
                   "(searched recursively), cifar10:DIR (the CIFAR-10 training zip's images) or 'skimage' "
                   "(scikit-image's photos); preprocessed as the weights say")
    p.add_argument("-o", "--output", required=True, help="the INT8 .onnx file to write")
    p.add_argument("--max-images", type=int_range(1, 100_000, what="an image count"), default=64,
                   help="calibration images used, evenly spaced (default 64)")
    p.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="percentile",
                   help="activation range calibration (default percentile: the 99.99th percentile)")
    p.add_argument("--reduce-range", action=argparse.BooleanOptionalAction, default=None,
                   help="7-bit weights, for CPUs with AVX2 but no VNNI (default: on exactly when this CPU lacks VNNI)")
    p.add_argument("--rounding", choices=("output-error", "nearest"), default="output-error",
                   help="weight rounding: minimise each layer's output error on the calibration images (default) or "
                   "round to nearest")
    p.add_argument("--no-bias-correction", dest="bias_correction", action="store_false",
                   help="keep the biases (default: correct each layer's mean output shift)")
    p.add_argument("--equalize", type=float_range(0.0, 1.0), default=None, metavar="ALPHA",
                   help="activation equalisation strength, 0 = off (default 0.5)")
    p.add_argument("--all-int8", dest="fp32_classifier", action="store_false",
                   help="quantize the last (classifier) convolution too (default: it stays fp32, so the logits are "
                   "not uint8; a smaller file and about 15%% faster, 2 points lower top-1 for squeezenet1_1.caffe)")
    p.add_argument("--data", metavar="DIR", help="also compare top-1/top-5 of fp32 and INT8 on this folder "
                   "(or cifar10:DIR)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..compress.int8 import EQUALIZE_ALPHA, FP32_CONVS, quantize_int8
    from ..compress.measure import calibration_set
    from ..inference import evaluate

    for module in ("onnx", "onnxruntime.quantization"):  # refused before any work, not at the export
        require(module, "INT8 quantization")
    refuse_onnx(args.weights, "quantize")
    check_outputs(args.output, inputs=weights_inputs(args.weights))
    model = build_model(args.weights, architecture=args.model)
    meta = model.pretrained_cfg
    path = quantize_int8(model, args.output, calibration_set(args.calibration, args.max_images),
                         max_images=args.max_images, method=args.method, reduce_range=args.reduce_range,
                         equalize=EQUALIZE_ALPHA if args.equalize is None else args.equalize, rounding=args.rounding,
                         bias_correction=args.bias_correction, fp32_convs=FP32_CONVS if args.fp32_classifier else ())
    int8 = build_model(path, architecture=args.model)
    print(f"wrote {path} ({path.stat().st_size:,} bytes; {meta.extra.get('weights', args.weights)} as INT8 QDQ: "
          f"{int8.pretrained_cfg.extra['quantization']})")
    if args.data:
        results = {name: evaluate(net, args.data) for name, net in (("fp32", model), ("int8", int8))}
        rows = [[name, f"{r['top1']:.2f}", f"{r['top5']:.2f}"] for name, r in results.items()]
        print(format_table(["model", "top-1 %", "top-5 %"], rows))
    return 0

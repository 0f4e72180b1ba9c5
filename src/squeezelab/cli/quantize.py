"""``squeezelab quantize``: INT8 post-training static quantization to an ONNX model (ONNX Runtime, QDQ)."""

from __future__ import annotations

import argparse

from ..extras import require
from ..tables import format_table
from ..weights.loader import load_model
from .args import check_outputs, int_range, refuse_onnx, weights_inputs


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("quantize", help="INT8 post-training quantization (ONNX Runtime QDQ) calibrated on "
                              "an image folder")
    p.add_argument("model", help="model name (checked against the weights' architecture)")
    p.add_argument("--weights", required=True, help="registered name or any weights file")
    p.add_argument("--calibration", required=True, metavar="DIR", help="folder of representative images (labels "
                   "not needed; searched recursively)")
    p.add_argument("-o", "--output", required=True, help="the INT8 .onnx file to write")
    p.add_argument("--max-images", type=int_range(1, 100_000, what="an image count"), default=64,
                   help="calibration images used (default 64)")
    p.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="percentile",
                   help="activation range calibration (default percentile: the 99.99th percentile)")
    p.add_argument("--reduce-range", action=argparse.BooleanOptionalAction, default=None,
                   help="7-bit weights, for CPUs with AVX2 but no VNNI (default: on exactly when this CPU lacks VNNI)")
    p.add_argument("--data", metavar="DIR", help="also compare top-1/top-5 of fp32 and INT8 on this folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..compress.int8 import quantize_int8

    for module in ("onnx", "onnxruntime.quantization"):  # refused before any work, not at the export
        require(module, "INT8 quantization")
    refuse_onnx(args.weights, "quantize")
    check_outputs(args.output, inputs=weights_inputs(args.weights))
    model, meta = load_model(args.weights, args.model)
    path = quantize_int8(model, meta, args.output, args.calibration, max_images=args.max_images, method=args.method,
                         reduce_range=args.reduce_range)
    print(f"wrote {path} ({path.stat().st_size:,} bytes; {meta.extra.get('weights', args.weights)} as INT8 QDQ, "
          f"{args.method} calibration on {args.calibration})")
    if args.data:
        from ..compress.measure import ImageSet

        int8, _ = load_model(path, args.model)
        images = ImageSet.load(args.data, meta)
        rows = [[name, *(f"{v:.1f}" for v in images.accuracy(net))] for name, net in (("fp32", model), ("int8", int8))]
        print(format_table(["model", "top-1 %", "top-5 %"], rows))
    return 0

"""``squeezelab compare``: params, MACs and size of several models side by side, with ratios to a baseline."""

from __future__ import annotations

import argparse

from .args import input_size


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compare", help="params, MACs, size and ratios to a baseline for several models")
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="zoo models or paper aliases, baselines or torchvision names")
    p.add_argument("--input-size", type=input_size, default=224, help="input side length for MACs (default 224)")
    p.add_argument("--baseline", default="alexnet",
                   help="model the ratios are taken against: alexnet (default), vgg19, mobilenet_v1, "
                        "mobilenet_v2 or any zoo model")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..analysis.compare import compare_models
    from ..tables import format_table

    rows = compare_models(args.models, input_size=args.input_size, baseline=args.baseline)
    headers = ["model", "params", "MMACs", "fp32 MiB", "int8 MiB", f"params vs {args.baseline}",
               f"MACs vs {args.baseline}"]
    cells = [[r.name, r.params, round(r.macs / 1e6, 1), round(r.size_fp32 / 2**20, 2), round(r.params / 2**20, 2),
              _ratio(r.param_ratio),
              _ratio(r.mac_ratio)]
             for r in rows]
    print(f"@ {args.input_size}x{args.input_size}, batch 1; ratios = {args.baseline} / model")
    print(format_table(headers, cells, markdown=args.markdown))
    return 0


def _ratio(ratio: float) -> str:
    if abs(ratio - 1.0) < 0.05:
        return "1.0x"
    return f"{ratio:.1f}x fewer" if ratio > 1 else f"{1 / ratio:.1f}x more"

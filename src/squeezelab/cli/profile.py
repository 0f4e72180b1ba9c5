"""``squeezelab profile``: per-layer shapes, parameters, MACs and activation bytes of one model."""

from __future__ import annotations

import argparse

from ..errors import SqueezelabError
from ..extras import require
from ..io import atomic_path, atomic_write_text
from .args import check_outputs, input_size, weights_inputs


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("profile", help="per-layer params, MACs, shapes and memory of one model")
    p.add_argument("model", help="zoo model or paper alias (squeezenet1_0, 1.0-SqNxt-23), baseline (mobilenet_v1) or "
                   "torchvision name (resnet18); NAME:KEY=VALUE[,...] passes builder keywords, as in simulate")
    p.add_argument("--input-size", type=input_size, default=224, help="input side length (default 224)")
    p.add_argument("--weights", help="checkpoint or weights file; nonzeros and sparse size then describe them")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--blocks", action="store_true", help="table: one row per paper-level unit (fire2, ...) only")
    p.add_argument("--plot", metavar="OUT.png", help="write per-layer params and MACs bar charts")
    p.add_argument("--log", action="store_true", help="log-scale y axes in the plot")
    p.add_argument("-o", "--output", help="write the table/CSV/JSON to this file instead of stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..analysis.profiling import profile

    if args.plot and not args.plot.lower().endswith(".png"):
        raise SqueezelabError(f"--plot writes a PNG file; give a name ending in .png, got {args.plot!r}")
    if args.plot:
        require("matplotlib", "--plot")
    inputs = weights_inputs(args.weights)
    check_outputs(args.output, args.plot, inputs=inputs)
    prof = profile(args.model, input_size=args.input_size, weights=args.weights)
    if args.format == "json":
        text = prof.to_json() + "\n"
    elif args.format == "csv":
        text = prof.to_csv()
    else:
        text = prof.table(blocks_only=args.blocks) + "\n\n" + prof.summary() + "\n"
    if args.plot:
        from ..analysis.plots import plot_profile

        fig = plot_profile(prof, log=args.log)
        with atomic_path(args.plot, inputs) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    if args.output:
        atomic_write_text(args.output, text, inputs)
    else:
        print(text, end="")
    return 0

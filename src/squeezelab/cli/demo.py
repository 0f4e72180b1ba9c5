"""``squeezelab demo``: run the pipeline end to end and write a report folder."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import SqueezelabError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="run the whole pipeline on built-in data and write a Markdown report")
    p.add_argument("-o", "--output", default="demo_report", help="report folder (default: demo_report)")
    p.add_argument("--quick", action="store_true", help="smaller settings everywhere (used by the tests)")
    p.add_argument("--data", metavar="DIR", help="a folder holding cifar10_test_jpeg.zip: the trained CIFAR-10 "
                                                 "checkpoints are scored on a slice of it (default: $SQUEEZELAB_DATA "
                                                 "if set; without it they predict the scikit-image photos)")
    p.add_argument("--sweep", metavar="DIR", help="a 'squeezelab sweep' output folder: its Figure 3 / Table 3 report "
                                                  "and verdicts join the report (make demo passes the committed "
                                                  "benchmarks/results/design_space_quick)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..analysis.design_space import read_report
    from ..demo import run_demo
    from .args import check_outputs

    check_outputs(args.output, kind="dir")
    data = args.data or os.environ.get("SQUEEZELAB_DATA") or None
    if data and not Path(data).is_dir():
        raise SqueezelabError(f"--data {data}: no such folder; pass the folder that holds cifar10_test_jpeg.zip")
    if args.sweep:
        read_report(Path(args.sweep))  # a one-line error if it holds no sweep results
    run_demo(args.output, quick=args.quick, data_dir=data, sweep_dir=args.sweep)
    return 0

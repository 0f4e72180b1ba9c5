"""``squeezelab demo``: run the pipeline end to end and write a report folder."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="run the whole pipeline on built-in data and write a Markdown report")
    p.add_argument("-o", "--output", default="demo_report", help="report folder (default: demo_report)")
    p.add_argument("--quick", action="store_true", help="smaller settings everywhere (used by the tests)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo
    from .args import check_outputs

    check_outputs(args.output, kind="dir")
    run_demo(args.output, quick=args.quick)
    return 0

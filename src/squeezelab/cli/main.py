"""The ``squeezelab`` command: a thin argparse layer over the library API.

Each subcommand lives in its own module of this package with a
``register(subparsers)`` function; ``COMMAND_MODULES`` lists them in the order
``--help`` shows them. User mistakes (:class:`SqueezelabError`) print one line
and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from .. import __version__
from ..errors import SqueezelabError

COMMAND_MODULES = ("zoo", "demo", "convert", "predict", "eval", "simulate", "train", "compress", "quantize", "lowrank", "profile", "compare", "claims", "export", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="squeezelab",
        description="SqueezeNet / SqueezeNext: models, weights, training, analysis, compression, "
        "hardware simulation and deployment.",
    )
    parser.add_argument("--version", action="version", version=f"squeezelab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{name}").register(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SqueezelabError as exc:
        print(f"squeezelab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("squeezelab: interrupted", file=sys.stderr)
        return 130

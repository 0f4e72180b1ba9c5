"""The ``squeezelab`` command: a thin argparse layer over the library API.

Each subcommand lives in its own module of this package with a
``register(subparsers)`` function; :data:`COMMANDS` lists them in the order
``--help`` shows them, with their one-line help. ``main`` imports only the
module of the command it runs (which imports its stage, and torch, when it
runs): ``squeezelab --help`` and ``--version`` import no stage and no torch. Usage errors and user mistakes (:class:`SqueezelabError`, and
a PermissionError on any path) print one line and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from .. import __version__
from ..errors import SqueezelabError, one_line, permission_message
from .args import OneLineParser

#: Command -> (module of this package that registers it, its one-line help as ``--help`` lists it).
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("zoo", "list the models with parameters and a one-line description"),
    "info": ("zoo", "architecture summary of one model"),
    "demo": ("demo", "run the whole pipeline on built-in data and write a Markdown report"),
    "convert": ("convert", "convert real SqueezeNet weights (Deep Compression, OpenVINO, ncnn) to a squeezelab "
                ".safetensors checkpoint"),
    "predict": ("predict", "top-k classes of images (preprocessing from the weights' metadata)"),
    "eval": ("eval", "top-1/top-5 accuracy on an ImageFolder, ImageNet-sample folder or the CIFAR-10 test zip"),
    "simulate": ("simulate", "simulate a model on a systolic-array accelerator (SCALE-Sim cycles, energy)"),
    "search": ("search", "hardware-aware co-design search of SqueezeNext and a systolic-array accelerator "
               "(optuna NSGA-II/TPE or exact enumeration); resumable"),
    "train": ("train", "train or fine-tune a model on digits, Fashion-MNIST, CIFAR-10 zips or an image folder"),
    "sweep": ("sweep", "train SqueezeNet's design space (Figure 3 SR/pct3x3 sweeps, Table 3 bypass) with seeds and "
              "confidence intervals; resumable"),
    "compress": ("compress", "Deep Compression (prune, k-means weight sharing, Huffman) to .sqz"),
    "quantize": ("quantize", "INT8 post-training quantization (ONNX Runtime QDQ) calibrated on an image folder"),
    "lowrank": ("lowrank", "low-rank factorization (SVD) with params/MACs saved and error"),
    "profile": ("profile", "per-layer params, MACs, shapes and memory of one model"),
    "compare": ("compare", "params, MACs, size and ratios to a baseline for several models"),
    "claims": ("claims", "measure the papers' claims (params, size, MACs) and report them"),
    "export": ("export", "export a model to ONNX, TorchScript or pt2 and check it against eager"),
    "bench": ("bench", "CPU latency, images/s and GFLOP/s of eager, optimized and ONNX Runtime"),
}


def build_parser(command: Optional[str] = None, lazy: bool = False) -> argparse.ArgumentParser:
    """The full parser, or with ``lazy`` one where only ``command``'s module registers its options.

    The other commands are placeholders with their :data:`COMMANDS` help, enough for ``--help``.
    """
    parser = OneLineParser(
        prog="squeezelab",
        description="SqueezeNet / SqueezeNext: models, weights, training, analysis, compression, "
        "hardware simulation and deployment.",
    )
    parser.add_argument("--version", action="version", version=f"squeezelab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = COMMANDS[command][0] if command in COMMANDS else None
    registered: set[str] = set()
    for name, (module, help_text) in COMMANDS.items():
        if lazy and module != chosen:
            subparsers.add_parser(name, help=help_text)
        elif module not in registered:
            importlib.import_module(f"{__package__}.{module}").register(subparsers)
            registered.add(module)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    empty = next((i for i, arg in enumerate(argv) if not arg.strip() or (arg.startswith("--") and arg.endswith("="))
                  ), None)
    if empty is not None:  # -o '' would fall back to a default (or the current folder) silently
        option = argv[empty][:-1] if argv[empty].endswith("=") else argv[empty - 1] if empty else ""
        after = f" (the value of {option})" if option.startswith("-") else ""
        print(f"squeezelab: error: argument {empty + 1} is empty{after}; give a path or value, or leave the "
              f"option out for its default", file=sys.stderr)
        return 2
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    args = build_parser(command, lazy=True).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SqueezelabError as exc:
        print(f"squeezelab: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except PermissionError as exc:  # a path the user may not read or write, wherever it is met: a user's mistake
        print(f"squeezelab: error: {permission_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("squeezelab: interrupted", file=sys.stderr)
        return 130

"""``squeezelab export``: ONNX / TorchScript / pt2 files with a built-in parity check."""

from __future__ import annotations

import argparse
import time
from typing import Optional

import torch
from torch import nn

from ..errors import SqueezelabError
from ..extras import require
from ..export.formats import FORMATS, SUFFIXES, check_parity, export_model
from ..io import atomic_path
from ..models import ClassifierModel, get_model_entry
from ..weights import build_model
from .args import check_outputs, input_size, weights_inputs


def load_cli_model(name: str, weights: Optional[str]) -> nn.Module:
    """The weights' model (checked against ``name``), or the zoo model ``name`` with random weights; eval mode,
    with ``pretrained_cfg``."""
    model = build_model(weights or name, architecture=name)
    if not isinstance(model, ClassifierModel):
        raise SqueezelabError(f"{weights} is already an exported model; pass a checkpoint or registered weights")
    return model.eval()


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export a model to ONNX, TorchScript or pt2 and check it against eager")
    p.add_argument("model", help="model name or paper alias")
    p.add_argument("--weights", help="registered weights name or checkpoint file (default: random init)")
    p.add_argument("--format", choices=FORMATS, default="onnx")
    p.add_argument("-o", "--output", help="output file (default: MODEL.onnx / .pt / .pt2)")
    p.add_argument("--input-size", type=input_size, help="square input side baked into the graph (default: the "
                   "model's)")
    p.add_argument("--dynamic-batch", action="store_true", help="symbolic batch dimension (onnx, pt2)")
    p.add_argument("--no-check", action="store_true", help="skip the parity check against eager")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export to a temporary file, check it, then rename it into place: a failed or interrupted check keeps nothing."""
    inputs = weights_inputs(args.weights)
    output = args.output or f"{get_model_entry(args.model).name}{SUFFIXES[args.format]}"
    check_outputs(output, inputs=inputs)
    if args.format == "onnx":  # refused before the model is built
        require("onnx", "ONNX export")
        if not args.no_check:
            require("onnxruntime", "the ONNX parity check (or pass --no-check)")
    model = load_cli_model(args.model, args.weights)
    meta = model.pretrained_cfg
    name = meta.architecture
    size = args.input_size or meta.input_size
    model.check_input(torch.zeros(1, meta.in_chans, size, size, device="meta"))
    dynamic = ", dynamic batch" if args.dynamic_batch and args.format != "torchscript" else ""
    with atomic_path(output, inputs) as tmp:
        start = time.perf_counter()
        export_model(model, tmp, args.format, input_size=size, dynamic_batch=args.dynamic_batch, meta=meta)
        elapsed = time.perf_counter() - start
        print(f"exported {name} to {output} ({args.format}, input 1x{meta.in_chans}x{size}x{size}{dynamic}, "
              f"{tmp.stat().st_size / 1e6:.2f} MB) in {elapsed:.1f}s")
        if not args.no_check:
            batch = 2 if args.dynamic_batch or args.format == "torchscript" else 1
            error = check_parity(model, tmp, args.format, size, batch=batch)
            runtime = "ONNX Runtime" if args.format == "onnx" else args.format
            print(f"parity: {runtime} vs eager on a random {batch}x{meta.in_chans}x{size}x{size} batch: "
                  f"max abs diff {error:.2e} (limit 1e-04)")
    return 0

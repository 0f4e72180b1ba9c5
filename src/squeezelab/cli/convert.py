"""``squeezelab convert``: a Deep Compression / OpenVINO / ncnn / Caffe weights file -> native checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SqueezelabError
from ..weights import convert_weights, get_weights_entry, list_weights
from ..weights.loader import SOURCE_FORMATS, convert_caffemodel
from .args import check_outputs, weights_inputs


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("convert", help="convert real SqueezeNet weights (Deep Compression, OpenVINO, ncnn) "
                                              "to a squeezelab .safetensors checkpoint")
    p.add_argument("input", nargs="?", help="the .net, .xml/.bin or .param/.bin file (the partner file must lie "
                                            "beside it)")
    p.add_argument("-o", "--output", help="the .safetensors checkpoint to write")
    p.add_argument("--from", dest="source_format", choices=(*SOURCE_FORMATS, "caffe"),
                   help="expected source format (detected from the content; a mismatch is an error); caffe for a "
                        "binary .caffemodel (SqueezeNet v1.0/v1.1, SqueezeNext)")
    p.add_argument("--prototxt", help="with --from caffe: the network's .prototxt, naming its layers (default: "
                                      "inferred from the caffemodel's layer names and blob shapes)")
    p.add_argument("--list", action="store_true", help="list the registered pretrained weights and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list:
        for name in list_weights():
            entry = get_weights_entry(name)
            print(f"{name:32s} {entry.architecture:14s} {entry.source_format:17s} {entry.description}")
        return 0
    if not args.input or not args.output:
        raise SqueezelabError("convert needs INPUT and -o OUTPUT.safetensors (or --list)")
    caffe = args.source_format == "caffe" or (args.source_format is None
                                              and Path(args.input).suffix.lower() == ".caffemodel")
    if args.prototxt and not caffe:
        raise SqueezelabError("--prototxt is for Caffe models; add --from caffe")
    check_outputs(args.output, inputs=[*weights_inputs(args.input), args.prototxt])
    if caffe:
        meta = convert_caffemodel(args.input, args.output, args.prototxt)
    else:
        meta = convert_weights(args.input, args.output, args.source_format)
    pre = meta.preprocess
    kwargs = "".join(f", {k}={v}" for k, v in meta.model_kwargs.items())
    print(f"wrote {args.output}: {meta.architecture}{kwargs}, {meta.num_classes} classes, from "
          f"{meta.extra['source_format']} (sha256 {meta.source_sha256[:12]}...); preprocess {pre.describe()}")
    return 0

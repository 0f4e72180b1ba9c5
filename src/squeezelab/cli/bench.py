"""``squeezelab bench``: latency / throughput of each inference path against torchvision eager."""

from __future__ import annotations

import argparse
import json
from typing import Optional

import torch

from ..deploy.bench import (BENCH_BACKENDS, BENCH_HEADERS, DEFAULT_BACKENDS, bench_model, bench_table_rows,
                             check_bench_memory, torchvision_model)
from ..errors import SqueezelabError
from ..export.timing import machine_info, sgemm_gflops
from ..extras import available, note_missing, require
from ..io import atomic_write_text
from ..tables import format_table
from .args import MAX_BATCH, check_outputs, input_size, int_range, positive_float, weights_inputs
from .export import load_cli_model


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,32, got {text!r}") from None
    if not values or min(values) < 1 or max(values) > MAX_BATCH:
        raise argparse.ArgumentTypeError(f"batch sizes must be positive and at most {MAX_BATCH}, got {text!r}")
    return values


def _backends(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [n for n in names if n not in BENCH_BACKENDS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown backend(s) {', '.join(unknown) or text!r}; "
                                         f"choose from {', '.join(BENCH_BACKENDS)}")
    return names


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="CPU latency, images/s and GFLOP/s of eager, optimized and ONNX Runtime")
    p.add_argument("models", nargs="+", metavar="MODEL")
    p.add_argument("--weights", help="weights for a single MODEL (default: random init; speed does not depend on it)")
    p.add_argument("--batch", type=_int_list, default=[1, 32], help="comma-separated batch sizes (default 1,32)")
    p.add_argument("--backends", type=_backends,
                   help=f"comma-separated, from {', '.join(BENCH_BACKENDS)} (default {','.join(DEFAULT_BACKENDS)}; "
                        "onnxruntime only where squeezelab[deploy] is installed, torchvision only where it has the "
                        "model). Speedups are against torchvision, else zoo, else the first backend timed")
    p.add_argument("--threads", type=int_range(1, 1024, what="a thread count"),
                   help="intra-op threads for torch and ONNX Runtime (default: torch's)")
    p.add_argument("--input-size", type=input_size,
                   help="square input side (default: the weights' crop, e.g. 32 for the CIFAR-10 checkpoints, else "
                        "the model's design size)")
    p.add_argument("--reps", type=int_range(3, 100_000, what="a repetition count"), default=30,
                   help="timed calls per configuration, in blocks of 4 after one untimed call (default 30)")
    p.add_argument("--max-seconds", type=positive_float, default=30.0,
                   help="stop a configuration's rounds after this long")
    p.add_argument("--json", metavar="OUT", help="also write the rows and the machine description as JSON")
    p.set_defaults(func=run)


def _backend_list(given: Optional[list[str]]) -> list[str]:
    """The backends to time: ``given`` (ONNX Runtime refused up front when it is missing), or the defaults
    (ONNX Runtime left out, with one note, when it is missing)."""
    if given is not None:
        if "onnxruntime" in given:
            require("onnxruntime", "--backends onnxruntime")
        return given
    if available("onnxruntime"):
        return list(DEFAULT_BACKENDS)
    note_missing("onnxruntime", "the onnxruntime backend")
    return [b for b in DEFAULT_BACKENDS if b != "onnxruntime"]


def run(args: argparse.Namespace) -> int:
    if args.weights and len(args.models) != 1:
        raise SqueezelabError("--weights needs exactly one MODEL")
    check_outputs(args.json, inputs=weights_inputs(args.weights))
    backends = _backend_list(args.backends)
    models = []
    for name in args.models:
        model = load_cli_model(name, args.weights)
        size = args.input_size or model.pretrained_cfg.input_size
        for batch in args.batch:  # every configuration is checked before the first is timed
            check_bench_memory(model, batch, size)
        models.append((model, size))
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    sgemm = sgemm_gflops(threads)
    info = machine_info()
    sizes = ", ".join(sorted({f"{size}x{size}" for _, size in models}))
    print(f"machine: {info['cpu']}, {info['cpu_count']} cores ({info['capability']}), {threads} threads, "
          f"load average {info['load_average'][0]:.2f}; sgemm {sgemm:.1f} GFLOP/s; input {sizes}")
    rows = []
    for model, size in models:
        # the default list times torchvision only where it has the model; a --backends list asks for it
        timed = backends if args.backends else [
            b for b in backends if b != "torchvision" or torchvision_model(model) is not None]
        for batch in args.batch:
            rows.extend(bench_model(model, batch, timed, input_size=size, threads=threads,
                                    reps=args.reps, max_seconds=args.max_seconds, sgemm=sgemm))
    info_after = machine_info()
    print(format_table(BENCH_HEADERS, bench_table_rows(rows)))
    print(f"load average after: {info_after['load_average'][0]:.2f}; * = fastest non-reference backend")
    if max(info["load_average"][0], info_after["load_average"][0]) > 0.5 * (info["cpu_count"] or 1):
        print("note: the machine is busy (load average above half the cores): torch's threads and the sgemm "
              "roofline suffer most; rerun on a quiet machine")
    if args.json:
        record = {"machine": info, "load_average_after": info_after["load_average"], "threads": threads,
                  "sgemm_gflops": sgemm, "input_sizes": {m.pretrained_cfg.architecture: s for m, s in models},
                  "rows": [r.as_dict() for r in rows]}
        atomic_write_text(args.json, json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0

"""``squeezelab lowrank``: SVD factorization of 1x1/FC layers and the 3x3 -> 3x1 + 1x3 split."""

from __future__ import annotations

import argparse
import copy

from ..analysis import count_macs, count_params
from ..errors import SqueezelabError
from ..tables import format_table
from ..weights.checkpoint import save_checkpoint
from ..weights.loader import build_model
from .args import check_outputs, fraction, refuse_onnx, weights_inputs


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("lowrank", help="low-rank factorization (SVD) with params/MACs saved and error")
    p.add_argument("model", help="model name (checked against the weights' architecture)")
    p.add_argument("--weights", required=True, help="registered name or any weights file")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--energy", type=fraction, default=0.9, help="keep this fraction of each layer's squared "
                       "singular values (default 0.9)")
    group.add_argument("--rank-fraction", type=fraction, help="keep this fraction of each layer's full rank")
    p.add_argument("--kinds", default="1x1,3x3", help="layer kinds to factorize: 1x1 (and FC), 3x3 (default both)")
    p.add_argument("--data", metavar="DIR", help="also compare top-1/top-5 before and after on this folder")
    p.add_argument("-o", "--output", help="write the rank-limited weights as a checkpoint of the original "
                   "architecture (the product of each factor pair)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..compress.lowrank import factorize_model, reconstruct

    refuse_onnx(args.weights, "lowrank")
    inputs = weights_inputs(args.weights)
    check_outputs(args.output, inputs=inputs)
    model = build_model(args.weights, architecture=args.model)
    meta = model.pretrained_cfg
    size = meta.input_size
    params0, macs0 = count_params(model), count_macs(model, size)
    factored = copy.deepcopy(model)
    done = factorize_model(factored, rank_fraction=args.rank_fraction,
                           energy=None if args.rank_fraction is not None else args.energy,
                           kinds=[k.strip() for k in args.kinds.split(",") if k.strip()])
    if not done:
        raise SqueezelabError("no layer gets smaller at this rank; lower --energy or --rank-fraction")
    params1, macs1 = count_params(factored), count_macs(factored, size)
    rows = [[f.name, f.kind, f"{f.rank}/{f.full_rank}", f.params_before, f.params_after, f"{f.weight_error:.3f}"]
            for f in done]
    print(format_table(["layer", "kind", "rank", "params", "params after", "rel. weight error"], rows))
    print(f"model: params {params0:,} -> {params1:,} ({1 - params1 / params0:.1%} saved), MACs @{size} "
          f"{macs0:,} -> {macs1:,} ({1 - macs1 / macs0:.1%} saved); {len(done)} layers factorized")
    state = model.state_dict()
    for f in done:
        state[f"{f.name}.weight"] = reconstruct(f.module).detach().reshape(state[f"{f.name}.weight"].shape)
    if args.data:
        from ..compress.measure import accuracy, labelled_batches

        images = labelled_batches(args.data, meta)
        before = accuracy(model, images)
        after = accuracy(factored.eval(), images)
        print(f"top-1 {before[0]:.1f}% -> {after[0]:.1f}%, top-5 {before[1]:.1f}% -> {after[1]:.1f}% on {args.data}")
    if args.output:
        save_checkpoint(args.output, state, meta, inputs=inputs)
        print(f"wrote {args.output} (rank-limited weights in the {meta.architecture} architecture)")
    return 0

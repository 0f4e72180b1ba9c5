"""``squeezelab list`` and ``squeezelab info``: what is in the zoo."""

from __future__ import annotations

import argparse

import torch

from ..analysis import count_macs, count_params
from ..errors import SqueezelabError
from ..models import create_model, get_model_entry, list_models
from ..tables import format_table
from .args import input_size, int_range


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("list", help="list the models with parameters and a one-line description")
    p.add_argument("pattern", nargs="?", help="shell-style filter, e.g. 'sqnxt23*' (plain text matches a substring)")
    p.set_defaults(func=run_list)

    p = subparsers.add_parser("info", help="architecture summary of one model")
    p.add_argument("model", help="model name or paper alias, e.g. squeezenet1_1 or 1.0-SqNxt-23v5")
    p.add_argument("--input-size", type=input_size, help="side length for the shapes and MACs (default: the model's)")
    p.add_argument("--num-classes", type=int_range(1, 100_000, what="a class count"), default=1000)
    p.set_defaults(func=run_info)


def run_list(args: argparse.Namespace) -> int:
    names = list_models(args.pattern)
    if not names:
        raise SqueezelabError(f"no model matches {args.pattern!r}; run 'squeezelab list' to see all models")
    rows = []
    for name in names:
        entry = get_model_entry(name)
        rows.append([name, count_params(create_model(name)), entry.input_size, entry.description])
    print(format_table(["model", "params", "input", "description"], rows))
    return 0


def stage_shapes(model: torch.nn.Module, input_size: int) -> list[tuple[str, str, int]]:
    """(stage name, output shape C x H x W, params) for each child of ``model.features`` and the head."""
    names = model.layer_names()
    rows: list[tuple[str, str, int]] = []
    x = torch.zeros(1, model.in_chans, input_size, input_size)
    model.eval()
    with torch.no_grad():
        trunk = getattr(model, "features", None)
        if isinstance(trunk, torch.nn.Sequential):
            for key, child in trunk.named_children():
                x = child(x)
                label = names.get(f"features.{key}", f"features.{key}")
                rows.append((label, "x".join(str(d) for d in x.shape[1:]), count_params(child)))
        else:
            x = model.forward_features(x)
            rows.append(("features", "x".join(str(d) for d in x.shape[1:]), count_params(model) -
                         count_params(model.get_classifier())))
        out = model.forward_head(x)
    head_params = count_params(model) - sum(r[2] for r in rows)
    rows.append(("head", "x".join(str(d) for d in out.shape[1:]), head_params))
    return rows


def run_info(args: argparse.Namespace) -> int:
    entry = get_model_entry(args.model)
    model = create_model(entry.name, num_classes=args.num_classes)
    size = entry.input_size if args.input_size is None else args.input_size
    model.check_input(torch.zeros(1, model.in_chans, size, size))
    print(f"{entry.name}: {entry.description}")
    if entry.aliases:
        print(f"aliases:        {', '.join(entry.aliases)}")
    print(f"paper:          {entry.paper}")
    print(f"source:         {entry.table}")
    print(f"parameters:     {count_params(model):,}")
    print(f"MACs @{size}:".ljust(16) + f"{count_macs(model, size):,}")
    print(f"input size:     {entry.input_size} (minimum {model.min_input_size})")
    doc = (entry.builder.__doc__ or "").strip()
    if doc:
        print(f"notes:          {doc.splitlines()[0]}")
    print()
    print(format_table(["stage", f"output @{size}", "params"], stage_shapes(model, size)))
    return 0

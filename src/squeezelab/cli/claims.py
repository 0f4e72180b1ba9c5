"""``squeezelab claims``: the papers' headline claims, each measured, as a Markdown report."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SqueezelabError
from ..io import atomic_write_text
from .args import check_outputs


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("claims", help="measure the papers' claims (params, size, MACs) and report them")
    p.add_argument("-o", "--output", metavar="REPORT.md",
                   help="write the Markdown report here, with its plots beside it (default: stdout, no plots)")
    p.add_argument("--sweep", metavar="DIR",
                   help="the output folder of `squeezelab sweep`: judge the design-space findings (Figure 3, "
                        "Table 3) from its trained results (default: those rows say 'not measured')")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..analysis.claims import render_markdown, run_claims
    from ..analysis.design_space import read_report

    sweep = Path(args.sweep) if args.sweep else None
    if sweep is not None:
        read_report(sweep)  # a wrong folder is a one-line error here, not a "not available" row
    figure_dir = None
    if args.output:
        out = Path(args.output)
        if out.suffix.lower() != ".md":
            raise SqueezelabError(f"the claims report is Markdown; give a name ending in .md, got {args.output!r}")
        check_outputs(out)
        figure_dir = out.parent
    results, ctx = run_claims(figure_dir=figure_dir, sweep_dir=sweep)
    text = render_markdown(results, ctx.figures)
    if args.output:
        atomic_write_text(args.output, text)
        print(f"claims report: {args.output} ({len(ctx.figures)} figure(s))")
    else:
        print(text, end="")
    return 0

"""``squeezelab sweep``: SqueezeNet's design-space experiments (Figure 3, Table 3), resumable (docs/design-space.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import float_range, int_range, non_negative_float, positive_int

_EXPERIMENTS = ("sr", "pct3x3", "bypass")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep", help="train SqueezeNet's design space (Figure 3 SR/pct3x3 sweeps, Table 3 bypass) with seeds and "
                      "confidence intervals; resumable",
        description="Train every point of the chosen experiments (SqueezeNet v1.0 with the section 5 metaparameters) "
                    "for each seed, cache each finished point as OUT/points/KEY.json, and write OUT/results.json, "
                    "OUT/report.md and OUT/figure3.png: mean top-1 with a Student-t interval per point, and a "
                    "verdict (holds / does not hold / inconclusive) per paper finding from Welch's interval. "
                    "Rerunning the same command skips cached points and resumes an interrupted one from its last "
                    "epoch.",
        epilog="example: squeezelab sweep --budget quick --data cifar10:../shared/data "
               "-o benchmarks/results/design_space_quick")
    p.add_argument("--budget", choices=("quick", "full"), default="quick",
                   help="quick: 10k CIFAR-10 training images, 10 epochs, 32 px (CPU); full: all training images, "
                        "30 epochs, 32 px (GPU). Both test on the whole test set. Default quick")
    p.add_argument("--data", default="digits",
                   help="digits (default), fashion-mnist[:DIR], cifar10:DIR (the JPEG zips) or an image folder")
    p.add_argument("--experiments", nargs="+", choices=_EXPERIMENTS, default=list(_EXPERIMENTS), metavar="EXP",
                   help="any of sr pct3x3 bypass (default all); shared points train once")
    p.add_argument("--seeds", nargs="+", type=int_range(0, 2**32 - 1, what="a seed"), default=[0, 1, 2],
                   metavar="SEED", help="training seeds per point (default 0 1 2; at least 2 for intervals)")
    p.add_argument("--output", "-o", metavar="DIR", help="sweep folder: cache, runs, report (default "
                                                         "runs/design_space_BUDGET)")
    p.add_argument("--report-only", action="store_true", help="rebuild the report from cached points; train nothing")
    p.add_argument("--tolerance", type=non_negative_float, default=1.0, metavar="POINTS",
                   help="top-1 points below which a difference counts as no gain (default 1.0)")
    p.add_argument("--confidence", type=float_range(0.5, 1.0, high_open=True), default=0.95,
                   help="confidence level of every interval (default 0.95)")
    p.add_argument("--max-points", type=positive_int, metavar="N",
                   help="train at most N new points in this call, then report and stop (rerun to continue)")
    p.add_argument("--threads", type=int_range(1, 1024, what="a thread count"),
                   help="torch CPU threads (default: torch's)")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda[:N]")
    p.add_argument("--keep-runs", action="store_true",
                   help="keep each finished point's run folder (checkpoints, metrics) under OUT/runs")
    p.add_argument("--no-plot", dest="plot", action="store_false", help="no figure3.png (matplotlib not needed)")
    p.add_argument("--progress", action="store_true", help="progress bars while training")
    p.set_defaults(func=run_sweep_command)


def run_sweep_command(args: argparse.Namespace) -> int:
    from ..train.sweep import report_from_cache, run_sweep

    output = Path(args.output or f"runs/design_space_{args.budget}")
    common = dict(budget=args.budget, data=args.data, experiments=args.experiments, seeds=args.seeds,
                  tol=args.tolerance, confidence=args.confidence, plots=args.plot)
    if args.report_only:
        report, files = report_from_cache(output, **common)
        status = 0
    else:
        result = run_sweep(output, threads=args.threads, device=args.device, max_points=args.max_points,
                           keep_runs=args.keep_runs, progress=args.progress, **common)
        report, files = result.report, result.files
        status = 130 if result.interrupted else 0
    for f in report["findings"]:
        interval = "n<2" if f["interval"] is None else f"[{f['interval'][0]:+.2f}, {f['interval'][1]:+.2f}]"
        print(f"{f['verdict']:>13}  {f['key']:<18} {interval:<18} {f['statement']}")
    print("wrote " + ", ".join(str(p) for p in files))
    return status

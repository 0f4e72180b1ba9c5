"""``squeezelab search``: hardware-aware co-design of SqueezeNext and a systolic-array accelerator (docs/codesign.md)."""

from __future__ import annotations

import argparse
from typing import Callable

from ..errors import SqueezelabError
from ..tables import format_table
from .args import check_outputs, float_range, int_range, positive_float, positive_int

_SPACES = ("depth21", "arch", "arch21", "joint", "joint21")
_SAMPLERS = ("nsga2", "tpe", "random", "exhaustive")
_PROXIES = ("params", "macs", "synflow", "snip", "grad_norm", "jacob_cov", "naswot")
_OBJECTIVES = ("cycles", "energy", "edp", "proxy")


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return values


def _names(choices: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        values = tuple(v.strip() for v in text.split(",") if v.strip())
        bad = [v for v in values if v not in choices]
        if not values or bad:
            raise argparse.ArgumentTypeError(f"expected some of {','.join(choices)} separated by commas, got {text!r}")
        return values
    parse.__name__ = "names"
    return parse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search", help="hardware-aware co-design search of SqueezeNext and a systolic-array accelerator "
                       "(optuna NSGA-II/TPE or exact enumeration); resumable",
        description="Search SqueezeNext designs (blocks and width per stage, stem, block variants, squeeze ratio) "
                    "and accelerators (array, dataflow, global buffer) under an area budget, with exact simulated "
                    "cycles and energy and an accuracy proxy. Writes OUT/pareto.json, pareto.csv (each row with "
                    "the 'squeezelab simulate' command that reproduces it), pareto.png and hypervolume.png. The "
                    "optuna study lives in --storage (default sqlite:///OUT/study.db): rerunning continues it.",
        epilog="examples: squeezelab search -o runs/search --space depth21 --trials 1000 --exact;  "
               "squeezelab search -o runs/arch --space arch --min-proxy v5;  "
               "squeezelab search -o runs/d21 --space depth21 --sampler exhaustive")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="where the front, plots and study go")
    p.add_argument("--space", choices=_SPACES, default="depth21",
                   help="depth21: the 1,140 splits of SqNxt-23's 21 blocks x a hardware grid (default); arch: every "
                        "architecture choice on the paper's accelerator; arch21: the same keeping 21 blocks; joint: "
                        "architecture x hardware; joint21: the same keeping 21 blocks")
    p.add_argument("--sampler", choices=_SAMPLERS, default="nsga2",
                   help="nsga2 (default), tpe, random, or exhaustive (enumerate a finite space)")
    p.add_argument("--trials", type=positive_int, default=1000, help="evaluations in the study (default 1000)")
    p.add_argument("--seed", type=int_range(0, 2**32 - 1, what="a seed"), default=0)
    p.add_argument("--population", type=positive_int, default=50, help="NSGA-II population (default 50)")
    p.add_argument("--mutation-prob", type=float_range(0, 1, low_open=True), metavar="P",
                   help="NSGA-II mutation probability per parameter (default 1/parameters; docs/codesign.md: 0.3 with "
                        "population 20 did best on depth21)")
    p.add_argument("--proxy", choices=_PROXIES, default="params",
                   help="accuracy proxy to maximise (default params; docs/codesign.md says which proxies "
                        "beat it on the validation); the zero-cost ones need --data")
    p.add_argument("--extra-proxies", type=_names(_PROXIES), default=(), metavar="P,P",
                   help="more proxies recorded for every design (not optimised)")
    p.add_argument("--objectives", type=_names(_OBJECTIVES), default=("cycles", "energy", "proxy"), metavar="O,O",
                   help="from cycles,energy,edp,proxy (default cycles,energy,proxy)")
    p.add_argument("--min-proxy", metavar="X|v5", help="constraint: proxy >= X, or >= 1.0-SqNxt-23v5's with 'v5'")
    p.add_argument("--area-budget", type=positive_float, metavar="A",
                   help="PE equivalents (default: the paper's accelerator's, 32x32 PEs + 128 KiB = 1056)")
    p.add_argument("--kib-per-pe", type=positive_float, help="GLB KiB with the area of one PE (default 4)")
    p.add_argument("--arrays", type=_ints, metavar="N,N", help="array sides for rows and columns (e.g. 8,16,32,64)")
    p.add_argument("--glb-kib", type=_ints, metavar="K,K", help="global-buffer sizes in KiB (e.g. 64,128,256)")
    p.add_argument("--dataflows", type=_names(("ws", "os", "is", "best")), metavar="D,D",
                   help="dataflows (ws,os,is,best; best = per layer)")
    p.add_argument("--exact", action="store_true",
                   help="also enumerate the space and measure the hypervolume against the exact front")
    p.add_argument("--storage", metavar="URL", help="optuna storage (any SQLAlchemy URL, e.g. postgresql://...; "
                                                   "default sqlite:///OUT/study.db)")
    p.add_argument("--study-name", help="study name in the storage (default SPACE-SAMPLER-PROXY-seedN)")
    p.add_argument("--data", metavar="DIR", help="folder of the CIFAR-10 zips (zero-cost proxies, --rerank)")
    p.add_argument("--rerank", type=positive_int, metavar="K",
                   help="then train K designs spread along the front, and 1.0-SqNxt-23v5, for one epoch of the "
                        "validated short protocol (tens of seconds each, resumable) and rank them by training "
                        "top-1: the proxy that beat params (docs/codesign.md); needs --data")
    p.add_argument("--no-plot", dest="plots", action="store_false", help="no PNGs (matplotlib not needed)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..search import get_space, search
    from ..search.run import V5_PROXY, with_hardware
    from ..search.space import V5_LABEL

    check_outputs(args.output, kind="dir")
    if args.proxy not in ("params", "macs") and not args.data:
        raise SqueezelabError(f"--proxy {args.proxy} scores networks on CIFAR-10 images; pass --data DIR")
    if args.rerank and not args.data:
        raise SqueezelabError("--rerank trains designs on CIFAR-10; pass --data DIR (the folder of the zips)")
    min_proxy = args.min_proxy
    if min_proxy is not None and min_proxy != V5_PROXY:
        try:
            min_proxy = float(min_proxy)
        except ValueError:
            raise SqueezelabError(f"--min-proxy {args.min_proxy!r} must be a number or 'v5'") from None
    space = get_space(args.space)
    space = with_hardware(space, rows=args.arrays, cols=args.arrays, glb_kib=args.glb_kib, dataflows=args.dataflows,
                          area_budget=args.area_budget, kib_per_pe=args.kib_per_pe)
    if args.space != "depth21" and args.sampler == "exhaustive" and space.arch.size() > 100_000:
        raise SqueezelabError(f"--space {args.space} has {space.arch.size():,} architectures, too many to enumerate; "
                              "use --sampler nsga2 or tpe")
    result = search(args.output, space, args.sampler, args.trials, args.seed, args.proxy, args.objectives, min_proxy,
                    args.extra_proxies, args.data, args.storage, args.study_name, args.exact, args.population,
                    args.plots, space_name=args.space, mutation_prob=args.mutation_prob)
    s = result.summary
    print(f"{s['space']}: {s['trials']} designs evaluated ({s['sampler']}), {len(result.designs)} on the front, "
          f"area <= {s['area_budget']:g}, {s['seconds']:.1f} s")
    if "exact" in s:
        share = s["exact"].get("found_share")
        print(f"exact front: {s['exact']['front']} of {s['exact']['designs']:,} designs, enumerated in "
              f"{s['exact']['seconds']:.1f} s" + (f"; hypervolume found {share:.2%}" if share is not None else ""))
    v5 = next(r for r in result.references if r["label"] == V5_LABEL)
    rows = [[r["spec"].split(":", 1)[1][:70], f"{r['hardware']['array_rows']}x{r['hardware']['array_cols']}",
             r["hardware"]["dataflow"], r["hardware"]["glb_kib"], f"{r['cycles']:,}", f"{r['energy']:.4g}",
             f"{r['cycles'] / v5['cycles']:.2f}", f"{r['energy'] / v5['energy']:.2f}",
             f"{r['proxies'][s['proxy']]:.4g}"] for r in result.designs[:20]]
    print(format_table(["design", "array", "df", "GLB KiB", "cycles", "energy", "cycles/v5", "energy/v5",
                        s["proxy"]], rows))
    if len(result.designs) > 20:
        print(f"... {len(result.designs) - 20} more in pareto.csv")
    if args.rerank:
        from ..search.shorttrain import SHORT_TRAINING_PROXY, rerank_front

        ranked = rerank_front(args.output, result, args.rerank, args.data, args.seed, report=print)
        print(f"re-ranked by short training ({SHORT_TRAINING_PROXY}: training top-1 % over the first epoch):")
        print(format_table(["design", "cycles/v5", "energy/v5", SHORT_TRAINING_PROXY],
                           [[r.get("label") or r["spec"].split(":", 1)[1], f"{r['cycles'] / v5['cycles']:.2f}",
                             f"{r['energy'] / v5['energy']:.2f}", f"{r['proxies'][SHORT_TRAINING_PROXY]:.2f}"]
                            for r in ranked]))
    for path in result.files:
        print(f"wrote {path}")
    return 0

"""Ground truth for the co-design search's accuracy proxies: short CIFAR-10 training of many SqueezeNext designs.

Issue 31 asks for at least 50 architectures trained on a short budget with at least 2 seeds. This
script trains 1.0-SqNxt-23, 1.0-SqNxt-23v5 and designs drawn at random from the search's architecture
space (``squeezelab.search.ArchSpace()``, seed 0) on the protocol below, one thread per run, and writes
a record after every run (atomically) to ``--runs``; finished runs are skipped, so rerunning the same
command continues an interrupted job. Runs evaluate after the last epoch only; the running training
top-1 of earlier epochs (recorded, free) is the short-training proxy::

    nice -n 10 python benchmarks/proxy_validation.py train --data /work/shared/data [--archs 50] [--seeds 0 1]
    python benchmarks/proxy_validation.py train --data DIR --spec "sqnxt23v5_w1:..." --seeds 0 1 2
    python benchmarks/proxy_validation.py analyse --data DIR    # proxies + the validation table (JSON + stdout)

``analyse`` scores every sampled design's proxies (params, MACs and the zero-cost ones, cached in
``--out``) and ranks them against the mean top-1 of the runs recorded so far: Kendall tau and Spearman rho
with bootstrap 95% intervals, top-10 recall, and the seed-to-seed tau (seed 0 against seed 1) as the noise
ceiling. It says how many designs and runs the table stands on; statistics that need more are left empty.

Protocol (``PROTOCOLS["short"]``, the default): 5,000 training images (one fixed subset, ``data_seed`` 0), 3 epochs
at 32 px with the small-input stem, batch 32, ``recipe="fast"``; top-1 on a fixed 2,000 of the 10,000 test images.
``--protocol medium`` (10,000 images, 10 epochs, batch 64, all 10,000 test images; the fast-recipe lever
protocol of docs/training.md) is the longer check of a few designs, with its own ``--runs`` file::

    python benchmarks/proxy_validation.py train --data DIR --protocol medium --runs R.json --spec SPEC ... --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from squeezelab.io import atomic_write_text
from squeezelab.models import create_model
from squeezelab.search.problem import PROXY_CLASSES, ProxyScorer, proxy_batch
from squeezelab.search.proxies import ZERO_COST, zero_cost_scores
from squeezelab.search.ranking import bootstrap, kendall_tau, spearman_rho, top_k_recall
from squeezelab.search.shorttrain import SHORT_TRAINING, short_training_config
from squeezelab.search.space import MODEL, REFERENCES, ArchSpace, Architecture, RandomSuggester
from squeezelab.tables import format_table

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = RESULTS / "proxy_validation_runs.json"
REPORT = RESULTS / "proxy_validation.json"
#: The proxies ranked against short training: the two size baselines, the zero-cost ones, and the training
#: top-1 after the first epoch (the short-training proxy: a third of the budget).
PROXY_NAMES = ("params", "macs", *ZERO_COST, "train_top1_epoch1")
#: Designs needed for a rank statistic (fewer and the table leaves it empty).
MIN_DESIGNS = 5
#: "short" is the library's (``squeezelab search --rerank`` trains its first epoch); "medium" confirms a few designs.
PROTOCOLS = {
    "short": SHORT_TRAINING,
    "medium": dict(train_limit=10000, val_limit=None, data_seed=0, epochs=10, batch_size=64, recipe="fast",
                   input_size=32, eval_every=10),
}
#: The seed of the random designs (the first two are always v1 and v5).
SAMPLE_SEED = 0


def sample_architectures(count: int, seed: int = SAMPLE_SEED) -> list[Architecture]:
    """1.0-SqNxt-23, 1.0-SqNxt-23v5 and ``count - 2`` distinct random designs of the default architecture space."""
    space, suggester = ArchSpace(), RandomSuggester(seed)
    archs = [REFERENCES["1.0-SqNxt-23"], REFERENCES["1.0-SqNxt-23v5"]]
    while len(archs) < count:
        arch = space.suggest(suggester)
        if arch not in archs and arch.problem() is None:
            archs.append(arch)
    return archs


def load_runs(path: Path, protocol: dict) -> dict:
    if path.is_file():
        data = json.loads(path.read_text())
        if data["protocol"] != protocol:
            sys.exit(f"{path} was trained with protocol {data['protocol']}, not {protocol}; use another --runs file")
        return data
    return {"protocol": protocol, "sample_seed": SAMPLE_SEED, "runs": []}


def train_one(arch: Architecture, seed: int, data: str, protocol: dict) -> dict:
    """Train ``arch`` once on ``protocol``; its accuracies after each evaluated epoch."""
    from squeezelab.train import train

    config = short_training_config(arch.model_kwargs, data, seed, **protocol)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="proxy_validation_") as out:
        result = train(config, output=out)
    if result.interrupted:
        raise KeyboardInterrupt
    history = result.history
    return {"spec": arch.spec, "arch": arch.to_dict(), "seed": seed,
            "top1": history[-1]["val_top1"],
            "train_top1_by_epoch": [row["train_top1"] for row in history],
            "train_loss": history[-1]["train_loss"], "train_seconds": sum(row["seconds"] for row in history),
            "wall_seconds": time.perf_counter() - start}


def run_training(args: argparse.Namespace) -> int:
    path = Path(args.runs)
    data = load_runs(path, PROTOCOLS[args.protocol])
    done = {(r["spec"], r["seed"]) for r in data["runs"]}
    if args.spec:
        from squeezelab.models import parse_model_spec

        archs = [Architecture.from_kwargs(parse_model_spec(text)[1]) for text in args.spec]
    elif "designs" in data:  # the sample drawn when the file was started (a later change of the space leaves it)
        archs = [Architecture.from_dict(d) for d in data["designs"]][: args.archs]
    else:
        archs = sample_architectures(args.archs)
        data["designs"] = [arch.to_dict() for arch in archs]
    todo = [(arch, seed) for arch in archs for seed in args.seeds if (arch.spec, seed) not in done]
    print(f"{len(archs)} designs x seeds {args.seeds}: {len(todo)} runs to go, {len(done)} recorded in {path}")
    for i, (arch, seed) in enumerate(todo, 1):
        record = train_one(arch, seed, args.data, data["protocol"])
        data["runs"].append(record)
        atomic_write_text(path, json.dumps(data, indent=1))
        print(f"[{i}/{len(todo)}] seed {seed} top-1 {record['top1']:.2f} train top-1 by epoch {record['train_top1_by_epoch']} "
              f"{record['wall_seconds']:.0f} s  {arch.spec}", flush=True)
    return 0


def score_proxies(archs: list[Architecture], data: str, report: dict, out: Path) -> dict:
    """{spec: {proxy: value}} of params, MACs and the zero-cost proxies (network initialised from seed 0),
    saved to ``out`` after each design (an interrupted run keeps what it scored)."""
    batch, sizes = proxy_batch(data), ProxyScorer()
    scores = report.setdefault("proxies", {})
    for i, arch in enumerate(archs, 1):
        if arch.spec in scores:
            continue
        torch.manual_seed(0)
        model = create_model(MODEL, num_classes=PROXY_CLASSES, small_input=True, **arch.model_kwargs)
        scores[arch.spec] = {"params": sizes.score(arch, "params"), "macs": sizes.score(arch, "macs"),
                             **zero_cost_scores(model, *batch)}
        atomic_write_text(out, json.dumps(report, indent=1))
        print(f"[{i}/{len(archs)}] proxies of {arch.spec}", flush=True)
    return scores


def _statistics(proxy: list[float], truth: list[float]) -> dict:
    if len(truth) < MIN_DESIGNS:
        return {}
    tau, rho = bootstrap(kendall_tau, proxy, truth), bootstrap(spearman_rho, proxy, truth)
    return {"kendall_tau": [tau.value, tau.low, tau.high], "spearman_rho": [rho.value, rho.low, rho.high],
            "top10_recall": top_k_recall(proxy, truth, 10) if len(truth) >= 20 else None}


def _table_row(name: str, stats: dict) -> list[str]:
    """One printed row: tau and rho with their intervals, and top-10 recall ("n/a" where not computed)."""
    return [name, *(f"{stats[k][0]:+.2f} [{stats[k][1]:+.2f}, {stats[k][2]:+.2f}]" if stats else "n/a"
                    for k in ("kendall_tau", "spearman_rho")),
            f"{stats['top10_recall']:.1f}" if stats and stats["top10_recall"] is not None else "n/a"]


def analyse(args: argparse.Namespace) -> int:
    data = load_runs(Path(args.runs), PROTOCOLS["short"])
    archs = [Architecture.from_dict(d) for d in data.get("designs", [])] or sample_architectures(args.archs)
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() else {}
    if args.cached_only:
        report.setdefault("proxies", {})
    else:
        score_proxies(archs, args.data, report, out)
    scored = [a for a in archs if a.spec in report["proxies"]]
    by_design: dict[str, dict[int, dict]] = {}
    for run in data["runs"]:
        by_design.setdefault(run["spec"], {})[run["seed"]] = run
    trained = [a.spec for a in scored if a.spec in by_design]
    truth = [statistics.mean(r["top1"] for r in by_design[s].values()) for s in trained]
    rows, table = {}, []
    for name in PROXY_NAMES:
        if name == "train_top1_epoch1":
            values = [statistics.mean(r["train_top1_by_epoch"][0] for r in by_design[s].values()) for s in trained]
        else:
            values = [report["proxies"][s][name] for s in trained]
        rows[name] = _statistics(values, truth)
        table.append(_table_row(name, rows[name]))
    paired = [s for s in trained if {0, 1} <= set(by_design[s])]
    ceiling = _statistics([by_design[s][0]["top1"] for s in paired], [by_design[s][1]["top1"] for s in paired])
    # The epoch-1 proxy above shares its run (and so its seed's noise) with the truth it is ranked against; this
    # row scores seed 0's first epoch against seed 1's final top-1, the fair comparison with the ceiling.
    name = "train_top1_epoch1_seed0_vs_seed1"
    rows[name] = _statistics([by_design[s][0]["train_top1_by_epoch"][0] for s in paired],
                             [by_design[s][1]["top1"] for s in paired])
    table.append(_table_row(name, rows[name]))
    runs = sum(len(v) for v in by_design.values())
    report.update(protocol=data["protocol"], designs_sampled=len(archs), designs_scored=len(scored),
                  designs_trained=len(trained),
                  runs_done=runs, runs_planned=len(archs) * 2, designs_with_two_seeds=len(paired),
                  validation=rows, seed_to_seed=ceiling)
    atomic_write_text(out, json.dumps(report, indent=1))
    print(f"zero-cost proxies scored for {len(scored)} of {len(archs)} designs")
    print(f"{runs} of {len(archs) * 2} runs done: {len(trained)} designs trained, {len(paired)} with both seeds "
          f"(statistics need >= {MIN_DESIGNS} designs, top-10 recall >= 20)")
    print(format_table(["proxy", "Kendall tau [95% CI]", "Spearman rho [95% CI]", "top-10 recall"], table))
    if ceiling:
        print(f"seed-to-seed tau (noise ceiling): {ceiling['kendall_tau'][0]:+.2f} "
              f"[{ceiling['kendall_tau'][1]:+.2f}, {ceiling['kendall_tau'][2]:+.2f}] over {len(paired)} designs")
    else:
        print(f"seed-to-seed tau: n/a ({len(paired)} designs with both seeds)")
    print(f"wrote {out}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the designs (resumable)")
    t.add_argument("--data", required=True, help="folder holding the CIFAR-10 JPEG zips")
    t.add_argument("--archs", type=int, default=50, help="designs: v1, v5 and random ones (default 50)")
    t.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    t.add_argument("--spec", nargs="+", help="train these designs (MODEL:KEY=VALUE) instead of the sample")
    t.add_argument("--runs", default=str(RUNS), help="the records file (appended, resumed)")
    t.add_argument("--protocol", choices=sorted(PROTOCOLS), default="short", help="training budget (default short)")
    t.set_defaults(func=run_training)
    a = sub.add_parser("analyse", help="proxies of every design and the validation table from the runs so far")
    a.add_argument("--data", required=True, help="folder holding the CIFAR-10 JPEG zips")
    a.add_argument("--archs", type=int, default=50)
    a.add_argument("--runs", default=str(RUNS))
    a.add_argument("--out", default=str(REPORT))
    a.add_argument("--cached-only", action="store_true", help="rank only the designs whose proxies are in --out")
    a.set_defaults(func=analyse)
    args = parser.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

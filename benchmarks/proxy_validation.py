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

Protocol (``PROTOCOL``): 5,000 training images (one fixed subset, ``data_seed`` 0), 3 epochs at 32 px with the
small-input stem, batch 32, ``recipe="fast"``; top-1 on a fixed 2,000 of the 10,000 test images.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from squeezelab.io import atomic_write_text
from squeezelab.search.space import MODEL, REFERENCES, ArchSpace, Architecture, RandomSuggester
from squeezelab.tables import format_table

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = RESULTS / "proxy_validation_runs.json"
PROTOCOL = dict(train_limit=5000, val_limit=2000, data_seed=0, epochs=3, batch_size=32, recipe="fast", input_size=32,
                eval_every=3)
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


def load_runs(path: Path) -> dict:
    if path.is_file():
        data = json.loads(path.read_text())
        if data["protocol"] != PROTOCOL:
            sys.exit(f"{path} was trained with protocol {data['protocol']}, not {PROTOCOL}; use another --runs file")
        return data
    return {"protocol": PROTOCOL, "sample_seed": SAMPLE_SEED, "runs": []}


def train_one(arch: Architecture, seed: int, data: str) -> dict:
    """Train ``arch`` once on the protocol; its accuracies after each evaluated epoch."""
    from squeezelab.train import TrainConfig, train

    proto = dict(PROTOCOL)
    config = TrainConfig(MODEL, data=f"cifar10:{data}", seed=seed, model_kwargs=arch.model_kwargs, threads=1,
                         progress=False, **proto)
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
    data = load_runs(path)
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
        record = train_one(arch, seed, args.data)
        data["runs"].append(record)
        atomic_write_text(path, json.dumps(data, indent=1))
        print(f"[{i}/{len(todo)}] seed {seed} top-1 {record['top1']:.2f} train top-1 by epoch {record['train_top1_by_epoch']} "
              f"{record['wall_seconds']:.0f} s  {arch.spec}", flush=True)
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
    t.set_defaults(func=run_training)
    args = parser.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

"""``squeezelab sweep``: train SqueezeNet's design space (arXiv 1602.07360, Figure 3 and Table 3), resumably.

Each distinct (design point, seed, budget) is one training run of
:func:`squeezelab.train.train` in ``OUT/runs/KEY`` and, once finished, one JSON
record ``OUT/points/KEY.json`` (written atomically). A rerun skips every point
with a record and resumes an unfinished run from its last saved epoch (the
trainer's own ``state.pt``), so an interrupted sweep continues where it
stopped. The report (``results.json``, ``report.md``, ``figure3.png``) is
rebuilt from the records after every point, and by :func:`report_from_cache`
without training. A record that is not a valid point record (damaged, edited,
from another version) counts as missing: the sweep warns and trains the point
again; the report warns and leaves it out. A sweep holds an OS lock on its
folder (``train.state.locked_run_dir``) while it trains. Statistics and
verdicts: :mod:`squeezelab.analysis.design_space`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..analysis.design_space import (DEFAULT_CONFIDENCE, DEFAULT_TOLERANCE, EXPERIMENTS, DesignPoint, build_report,
                                     grid, summarize, write_report)
from ..analysis.counting import count_params
from ..data.datasets import build_datasets, parse_data_source
from ..errors import SqueezelabError
from ..extras import require
from ..io import atomic_write_text, check_output, remove_stray_temporaries
from ..models import create_model
from ..weights.checkpoint import read_checkpoint
from .config import TrainConfig
from .engine import Solver, has_batchnorm, resolve_solver, train
from .resume import ADJUSTABLE_FIELDS, RUNTIME_FIELDS
from .state import STATE_FILE, locked_run_dir

#: The architecture every point trains: SqueezeNet v1.0, the network section 5 varies.
MODEL = "squeezenet1_0"
#: Bytes per fp32 weight and bytes per MB: the paper's "4.8MB" is 1,248,424 x 4 bytes in MiB.
FP32_BYTES, MB = 4, 2 ** 20
#: Every seed trains on the same ``train_limit`` subset (issue 15: "a fixed 10k-image subset"); the seed
#: varies the initialisation, sample order and augmentation only.
DATA_SEED = 0
#: Version of the point record; a change of the training protocol that keeps the keys must bump it.
RECORD_VERSION = 2
#: The fields of a point record the report reads, with their types (``_read_record`` checks them).
RECORD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "top1": (int, float), "seed": int, "params": int, "size_mb": (int, float), "imagenet_size_mb": (int, float),
    "train_seconds": (int, float)}


@dataclass(frozen=True)
class Budget:
    """How much each point trains: the parts of :class:`TrainConfig` that decide its number."""

    name: str
    epochs: int
    input_size: int
    train_limit: Optional[int] = None
    val_limit: Optional[int] = None
    batch_size: int = 64
    #: Base LR; ``None``: the trainer's default for the batch (``engine.default_lr``).
    lr: Optional[float] = None
    description: str = ""


#: ``quick``: a 10k-image CIFAR-10 training subset, 10 epochs at 32 px, tested on all 10k test images (CPU-able),
#: at AdamW's rate 0.002: the default when its 36 committed runs were trained, kept so that they stay its cache
#: (docs/design-space.md, "The grid"). ``full``: all 50k training images, 30 epochs at 32 px (a GPU job), at the
#: default rate. Either takes any ``--data``.
BUDGETS: dict[str, Budget] = {
    "quick": Budget("quick", epochs=10, input_size=32, train_limit=10_000, lr=0.002,
                    description="10k-image training subset, 10 epochs, 32 px, full test set"),
    "full": Budget("full", epochs=30, input_size=32,
                   description="full training set, 30 epochs, 32 px, full test set"),
}


def _data_key(data: str) -> str:
    """The data set's identity in a key: its kind for the built-in sets, else the folder's name."""
    source = parse_data_source(data)
    return source.kind if source.kind != "folder" else "folder:" + Path(source.location).resolve().name


def point_config(point: DesignPoint, seed: int, budget: Budget, data: str, **runtime: Any) -> TrainConfig:
    """The training configuration of one (point, seed): the trainer's default recipe at ``budget``."""
    return TrainConfig(model=MODEL, data=data, seed=seed, data_seed=DATA_SEED, model_kwargs=point.model_kwargs(),
                       epochs=budget.epochs, input_size=budget.input_size, train_limit=budget.train_limit,
                       val_limit=budget.val_limit, batch_size=budget.batch_size, lr=budget.lr, **runtime)


#: Training options added after the committed records, with the value that means "as before": left out of a key
#: at that value, so a record keeps its key (and a run that changes one of them gets a new key).
_LATER_FIELDS: dict[str, Any] = {"recipe": "default", "nesterov": False, "ema_decay": 0.0, "swa": False,
                                 "whiten_stem": False, "data_loader": "samples", "derandomized_flips": False,
                                 "cutout": 0, "eval_every": 1}


def point_key(point: DesignPoint, seed: int, budget: Budget, data: str) -> str:
    """The cache key of one run: a hash of its whole training configuration with the data set's identity in
    place of its path, and the optimizer, LR and weight decay the recipe's rules resolve (``lr=None`` and
    ``optimizer="auto"`` name a rule, not a value), so a changed default retrains."""
    cfg = point_config(point, seed, budget, data).with_recipe()
    ident = {name: value for name, value in cfg.to_dict().items() if name not in RUNTIME_FIELDS | ADJUSTABLE_FIELDS
             and not (name in _LATER_FIELDS and value == _LATER_FIELDS[name])}
    ident.update(asdict(_solver(point, cfg)), data=_data_key(data), version=RECORD_VERSION)
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    return f"sr{point.sr:g}_pct{point.pct3x3:g}_{point.bypass}_s{seed}_{budget.name}_{digest}"


@functools.lru_cache(maxsize=None)
def _has_batchnorm(point: DesignPoint) -> bool:
    """Whether the point's network normalises with BatchNorm (built once per point, not once per key)."""
    return has_batchnorm(create_model(MODEL, **point.model_kwargs()))


def _solver(point: DesignPoint, cfg: TrainConfig) -> Solver:
    """The optimizer, LR and weight decay the point trains with."""
    return resolve_solver(cfg, _has_batchnorm(point))


@dataclass
class SweepResult:
    """What :func:`run_sweep` did: records trained now, found cached, and whether it stopped early."""

    output: Path
    trained: list[str]
    cached: list[str]
    report: dict[str, Any]
    files: list[Path]
    stopped: bool = False
    interrupted: bool = False


def _imagenet_params(point: DesignPoint) -> int:
    """Parameters of the same point as Figure 3 sizes it: 1000 classes, RGB, the 224 px stem."""
    return count_params(create_model(MODEL, **point.model_kwargs()))


def _record(point: DesignPoint, seed: int, budget: Budget, data: str, run_dir: Path, history: list[dict[str, Any]]
            ) -> dict[str, Any]:
    """A finished run's point record: final test top-1/top-5, size, train time, the per-epoch metrics."""
    weights = read_checkpoint(run_dir / "last.safetensors")[0]
    params = sum(t.numel() for t in weights.values())
    final = history[-1]
    return {
        "version": RECORD_VERSION, "model": MODEL, "config": point.model_kwargs(), "point": point.label,
        "seed": seed, "budget": asdict(budget), "data": data, "epochs": len(history),
        "top1": final["val_top1"], "top5": final["val_top5"], "test_loss": final["val_loss"],
        "params": params, "size_mb": params * FP32_BYTES / MB,
        "imagenet_size_mb": _imagenet_params(point) * FP32_BYTES / MB,
        "solver": asdict(_solver(point, point_config(point, seed, budget, data))),
        "train_seconds": sum(float(r["seconds"]) for r in history), "history": history,
    }


def _record_problem(record: Any, seed: int) -> Optional[str]:
    """What makes ``record`` unusable as the point record of ``seed`` (None: it is usable)."""
    if not isinstance(record, dict):
        return f"it holds {type(record).__name__}, not a record"
    for name, kind in RECORD_FIELDS.items():
        value = record.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"its {name!r} is {'missing' if name not in record else type(value).__name__}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"its {name!r} is {value}"
    if not 0.0 <= record["top1"] <= 100.0 or record["seed"] != seed:
        return f"its top-1 {record['top1']} or seed {record['seed']} is wrong for seed {seed}"
    return None


def _read_record(path: Path, seed: int, log: Callable[[str], None]) -> Optional[dict[str, Any]]:
    """The point record at ``path``, or None (with one warning) if it is missing, unreadable or malformed."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: bad JSON, or bytes that are not UTF-8
        problem: Optional[str] = f"it is unreadable ({str(exc).splitlines()[0]})"
    else:
        problem = _record_problem(record, seed)
    if problem is None:
        return record
    log(f"squeezelab: warning: cached point {path} is not a valid point record ({problem}); it counts as not "
        f"trained (a sweep trains it again)")
    return None


def _load_records(points_dir: Path, keys: dict[tuple[DesignPoint, int], str], log: Callable[[str], None]
                  ) -> dict[DesignPoint, list[dict[str, Any]]]:
    found: dict[DesignPoint, list[dict[str, Any]]] = {}
    for (point, seed), key in keys.items():
        record = _read_record(points_dir / f"{key}.json", seed, log)
        if record is not None:
            found.setdefault(point, []).append(record)
    return found


def _report(output: Path, budget: Budget, data: str, experiments: Sequence[str], seeds: Sequence[int],
            keys: dict[tuple[DesignPoint, int], str], tol: float, confidence: float, plots: bool,
            log: Callable[[str], None]) -> tuple[dict[str, Any], list[Path]]:
    records = _load_records(output / "points", keys, log)
    summaries = {p: summarize(r, confidence) for p, r in records.items()}
    report = build_report(summaries, records, experiments, len(seeds), tol, confidence)
    report.update(budget=asdict(budget), data=data, seeds=list(seeds))
    about = f" ({budget.description})" if budget.description else ""
    title = f"SqueezeNet design space, {budget.name} budget{about} on {data}"
    return report, write_report(report, output, title, plots)


def _prepare(budget: str | Budget, experiments: Sequence[str], seeds: Sequence[int], output: Path, plots: bool
             ) -> Budget:
    """Check the arguments before any work; the budget as a :class:`Budget`."""
    if isinstance(budget, str) and budget not in BUDGETS:
        raise SqueezelabError(f"unknown budget {budget!r}; choose from {', '.join(BUDGETS)}")
    if not experiments or not seeds:
        raise SqueezelabError("give at least one experiment and one seed")
    grid(experiments)
    if len(set(seeds)) != len(seeds):
        raise SqueezelabError(f"seeds repeat: {' '.join(map(str, seeds))}")
    check_output(output, kind="dir", what="sweep output")
    if plots:
        require("matplotlib", "the sweep's Figure 3 plot (or pass --no-plot)")
    return BUDGETS[budget] if isinstance(budget, str) else budget


def _keys(points: Sequence[DesignPoint], seeds: Sequence[int], budget: Budget, data: str
          ) -> dict[tuple[DesignPoint, int], str]:
    return {(p, s): point_key(p, s, budget, data) for p in points for s in seeds}


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def report_from_cache(output: Path, *, budget: str | Budget = "quick", data: str = "digits",
                      experiments: Sequence[str] = tuple(EXPERIMENTS), seeds: Sequence[int] = (0, 1, 2),
                      tol: float = DEFAULT_TOLERANCE, confidence: float = DEFAULT_CONFIDENCE, plots: bool = True,
                      log: Callable[[str], None] = _stderr) -> tuple[dict[str, Any], list[Path]]:
    """Rebuild the report from the cached point records in ``output``, training nothing (a malformed record
    is left out with a warning)."""
    output = Path(output)
    spec = _prepare(budget, experiments, seeds, output, plots)
    if not (output / "points").is_dir():
        raise SqueezelabError(f"{output} holds no cached points ({output / 'points'} is missing); run the sweep first")
    keys = _keys(grid(experiments), seeds, spec, data)
    return _report(output, spec, data, experiments, seeds, keys, tol, confidence, plots, log)


def run_sweep(output: Path, *, budget: str | Budget = "quick", data: str = "digits",
              experiments: Sequence[str] = tuple(EXPERIMENTS), seeds: Sequence[int] = (0, 1, 2),
              tol: float = DEFAULT_TOLERANCE, confidence: float = DEFAULT_CONFIDENCE, threads: Optional[int] = None,
              device: str = "auto", max_points: Optional[int] = None, stop_after_epochs: Optional[int] = None,
              keep_runs: bool = False, plots: bool = True, progress: bool = False,
              log: Callable[[str], None] = _stderr) -> SweepResult:
    """Train every (point, seed) of ``experiments`` not cached in ``output`` yet, then write the report.

    ``budget`` is a name of :data:`BUDGETS` or a :class:`Budget` (tests pass tiny ones). ``max_points``
    trains at most that many new points in this call; ``stop_after_epochs`` stops the first unfinished
    run after that many epochs (its state is kept, the next call resumes it). A finished run's
    directory is deleted once its record is written unless ``keep_runs``. The sweep holds a lock on
    ``output`` while it runs: a second sweep into it is a one-line error.
    """
    output = Path(output)
    spec = _prepare(budget, experiments, seeds, output, plots)
    with locked_run_dir(output, what="sweep folder"):
        return _run_sweep(output, spec, data, experiments, seeds, tol, confidence, threads, device, max_points,
                          stop_after_epochs, keep_runs, plots, progress, log)


def _run_sweep(output: Path, spec: Budget, data: str, experiments: Sequence[str], seeds: Sequence[int], tol: float,
               confidence: float, threads: Optional[int], device: str, max_points: Optional[int],
               stop_after_epochs: Optional[int], keep_runs: bool, plots: bool, progress: bool,
               log: Callable[[str], None]) -> SweepResult:
    """:func:`run_sweep` once the arguments are checked and the folder is locked."""
    if (output / "points").is_dir():
        remove_stray_temporaries(output / "points")  # records whose write a kill cut short
    points = grid(experiments)
    keys = _keys(points, seeds, spec, data)
    todo = [(p, s) for s in seeds for p in points
            if _read_record(output / "points" / f"{keys[p, s]}.json", s, log) is None]
    cached = [keys[k] for k in keys if k not in todo]
    if todo:  # bad data fails here, in one line, before anything is logged or trained
        build_datasets(data, spec.input_size, train_limit=spec.train_limit, val_limit=spec.val_limit, augment=False)
    log(f"sweep: {len(points)} distinct points x {len(seeds)} seeds = {len(keys)} runs ({spec.name} budget); "
        f"{len(cached)} cached, {len(todo)} to train, output {output}")
    trained: list[str] = []
    stopped = interrupted = False
    for i, (point, seed) in enumerate(todo):
        if max_points is not None and len(trained) >= max_points:
            stopped = True
            log(f"sweep: stopped after {max_points} new point(s) (max_points); rerun to continue")
            break
        key = keys[point, seed]
        run_dir = output / "runs" / key
        resuming = (run_dir / STATE_FILE).is_file()
        runtime = {"threads": threads, "device": device, "progress": progress, "stop_after": stop_after_epochs}
        if resuming:
            cfg = TrainConfig(model=MODEL, resume=str(run_dir), **runtime)
            explicit = {k for k in ("threads", "device") if runtime[k] not in (None, "auto")}
        else:
            cfg = point_config(point, seed, spec, data, output=str(run_dir), overwrite=True, **runtime)
            explicit = None
        log(f"sweep: [{i + 1}/{len(todo)}] {point.label} seed {seed}{' (resuming)' if resuming else ''}")
        start = time.perf_counter()
        result = train(cfg, explicit=explicit)
        if result.interrupted or result.stopped:
            interrupted, stopped = result.interrupted, result.stopped
            log(f"sweep: {point.label} seed {seed} saved at epoch {len(result.history)}; rerun the same command to "
                f"resume it")
            break
        record = _record(point, seed, spec, data, run_dir, result.history)
        atomic_write_text(output / "points" / f"{key}.json", json.dumps(record, indent=1) + "\n")
        trained.append(key)
        if not keep_runs:
            shutil.rmtree(run_dir)
        log(f"sweep: {point.label} seed {seed}: test top-1 {record['top1']:.2f}%, {record['size_mb']:.2f} MB, "
            f"{time.perf_counter() - start:.0f}s")
    report, files = _report(output, spec, data, experiments, seeds, keys, tol, confidence, plots, log)
    return SweepResult(output, trained, cached, report, files, stopped, interrupted)


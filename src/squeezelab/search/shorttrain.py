"""Short training: the one accuracy proxy that ranked the ``arch`` space better than ``params`` in the validation.

``benchmarks/proxy_validation.py`` trained 50 designs x 2 seeds on :data:`SHORT_TRAINING` and ranked every
proxy against their top-1 (docs/codesign.md, "Proxy validation"): ``params`` and the zero-cost proxies were at
chance or inverse, while the training top-1 of the first epoch ranked the designs, even against the final top-1
of the *other* seed. It costs tens of seconds a design, so a search cannot optimise it over 1,000 trials; it
re-ranks a found front instead (``squeezelab search --rerank K``).
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from ..errors import SqueezelabError
from ..io import atomic_write_text
from ..train import TrainConfig, train
from .report import write_pareto
from .run import SearchResult
from .space import MODEL, V5_LABEL

#: The validated short protocol: 5,000 CIFAR-10 training images (one fixed subset), 3 epochs at 32 px with the
#: small-input stem, batch 32, the fast recipe, top-1 on a fixed 2,000 test images after the last epoch.
SHORT_TRAINING: dict[str, Any] = dict(train_limit=5000, val_limit=2000, data_seed=0, epochs=3, batch_size=32,
                                      recipe="fast", input_size=32, eval_every=3)
#: The proxy's name in pareto.json rows: training top-1 (%) over the first epoch of :data:`SHORT_TRAINING`.
SHORT_TRAINING_PROXY = "short_training"


def short_training_config(model_kwargs: dict[str, Any], data: str, seed: int = 0, **protocol: Any) -> TrainConfig:
    """The :class:`TrainConfig` of one short run of ``MODEL(**model_kwargs)`` on the CIFAR-10 zips in ``data``
    (``protocol`` overrides :data:`SHORT_TRAINING`), one thread."""
    return TrainConfig(MODEL, data=f"cifar10:{data}", seed=seed, model_kwargs=dict(model_kwargs), threads=1,
                       progress=False, **{**SHORT_TRAINING, **protocol})


def short_training_score(model_kwargs: dict[str, Any], data: str, seed: int = 0, **protocol: Any) -> float:
    """Training top-1 (%) over the first epoch of the short protocol; the run stops there (``stop_after=1``),
    so the learning-rate schedule is the 3-epoch one the validation measured."""
    config = short_training_config(model_kwargs, data, seed, stop_after=1, **protocol)
    with tempfile.TemporaryDirectory(prefix="squeezelab_short_training_") as out, \
            contextlib.redirect_stdout(io.StringIO()):  # the trainer's log (and its "--resume" hint) is not ours
        result = train(config, output=out)
    if result.interrupted:
        raise KeyboardInterrupt
    return float(result.history[0]["train_top1"])


def spread_along(rows: Sequence[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """``count`` rows evenly spaced along ``rows`` (a front sorted by cycles), ends included; all if fewer."""
    if count >= len(rows):
        return list(rows)
    return [rows[i] for i in np.linspace(0, len(rows) - 1, count).round().astype(int)]


def rerank(rows: Sequence[dict[str, Any]], data: str, cache: Path, seed: int = 0,
           report: Optional[Callable[[str], None]] = None, **protocol: Any) -> None:
    """Add ``proxies["short_training"]`` to each pareto.json row, training each distinct design once.

    Scores are kept in ``cache`` (JSON, written after each design), so an interrupted re-rank continues
    where it stopped; a cache made with another protocol or seed is refused rather than mixed in.
    ``report`` gets one line per design trained.
    """
    settings = {"protocol": {**SHORT_TRAINING, **protocol}, "seed": seed}
    scores: dict[str, dict[str, float]] = {}
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if {k: saved.get(k) for k in settings} != settings:
            raise SqueezelabError(f"{cache} holds short-training scores of another protocol or seed; "
                                  "delete it or pass another output folder")
        scores = saved["scores"]
    for row in rows:
        if row["spec"] not in scores:
            start = time.perf_counter()
            top1 = short_training_score(row["model_kwargs"], data, seed, **protocol)
            scores[row["spec"]] = {"train_top1_epoch1": top1, "seconds": time.perf_counter() - start}
            atomic_write_text(cache, json.dumps({**settings, "scores": scores}, indent=1))
            if report:
                report(f"short training {row['spec']}: {top1:.2f}% ({scores[row['spec']]['seconds']:.0f} s)")
        row["proxies"] = {**row["proxies"], SHORT_TRAINING_PROXY: scores[row["spec"]]["train_top1_epoch1"]}


def rerank_front(out_dir: Union[str, Path], result: SearchResult, count: int, data: str, seed: int = 0,
                 report: Optional[Callable[[str], None]] = None, **protocol: Any) -> list[dict[str, Any]]:
    """Short-train ``count`` designs spread along ``result``'s front and 1.0-SqNxt-23v5 (the reference to beat),
    rewrite ``out_dir``/pareto.json and pareto.csv with the new proxy column, and return those rows, best first.
    The cache is ``out_dir``/short_training.json."""
    out_dir = Path(out_dir)
    v5 = next(row for row in result.references if row["label"] == V5_LABEL)
    chosen = [*spread_along(result.designs, count), v5]
    rerank(chosen, data, out_dir / "short_training.json", seed, report, **protocol)
    write_pareto(out_dir, result.summary, result.designs, result.references)
    return sorted(chosen, key=lambda row: -row["proxies"][SHORT_TRAINING_PROXY])

"""Per-epoch metrics of a run: ``metrics.json``, ``metrics.csv`` and ``curves.png``."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from ..io import atomic_path, atomic_write_text
from ..plotting import new_figure

#: Columns of metrics.csv, in order.
METRIC_FIELDS = ("epoch", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr", "images_per_s",
                 "seconds", "skipped_images", "eval_seconds")


def write_metrics(run_dir: Path, history: Sequence[dict[str, Any]], summary: dict[str, Any]) -> None:
    """Write metrics.json ({"summary", "epochs"}) and metrics.csv (one row per epoch)."""
    atomic_write_text(run_dir / "metrics.json", json.dumps({"summary": summary, "epochs": list(history)}, indent=2))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k, "") for k in METRIC_FIELDS})
    atomic_write_text(run_dir / "metrics.csv", buffer.getvalue())


def plot_curves(run_dir: Path, history: Sequence[dict[str, Any]], title: str) -> Path:
    """Loss (train, val) and accuracy (train, val top-1, val top-5) against epoch, as curves.png."""
    epochs = [row["epoch"] for row in history]

    def column(name: str) -> list[float]:  # epochs without an evaluation (``eval_every``) plot as gaps
        return [math.nan if row[name] is None else row[name] for row in history]

    fig = new_figure(figsize=(10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, column("train_loss"), "o-", label="train")
    ax_loss.plot(epochs, column("val_loss"), "o-", label="val")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy loss")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    ax_acc.plot(epochs, column("train_top1"), "o-", label="train top-1")
    ax_acc.plot(epochs, column("val_top1"), "o-", label="val top-1")
    ax_acc.plot(epochs, column("val_top5"), "o-", label="val top-5")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_ylim(0, 100)
    ax_acc.legend()
    ax_acc.grid(alpha=0.3)
    fig.suptitle(title)
    path = run_dir / "curves.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    return path


class Progress:
    """A one-line progress bar on stderr (only when it is a terminal) with loss and throughput."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.total, self.label = total, label
        self.start = time.perf_counter()

    def update(self, done: int, loss: float, images: int) -> None:
        if not self.enabled:
            return
        rate = images / max(time.perf_counter() - self.start, 1e-9)
        width = 24
        filled = int(width * done / max(self.total, 1))
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
                         f"loss {loss:.4f} {rate:.0f} img/s")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()

"""The demo's training stage: squeezenet1_1 trained from scratch on scikit-learn's digits."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..tables import format_table
from .config import TrainConfig
from .engine import train

if TYPE_CHECKING:
    from ..demo import DemoContext

DATA = "digits"


def train_stage(ctx: "DemoContext") -> None:
    """Train squeezenet1_1 on digits at 8 px (5 epochs; ctx.quick: 1 epoch on 200 images) and report it."""
    options = dict(train_limit=200, val_limit=100, epochs=1) if ctx.quick else dict(epochs=5)
    result = train(TrainConfig("squeezenet1_1", data=DATA, input_size=8, batch_size=32, lr=0.01, threads=1,
                               progress=False, output=str(ctx.root / "train_run"), **options))
    ctx.artifacts["checkpoint"] = str(result.best_checkpoint)
    ctx.artifacts["data"] = DATA
    rows = [[r["epoch"], f"{r['train_loss']:.3f}", f"{r['val_loss']:.3f}", f"{r['val_top1']:.1f}",
             f"{r['val_top5']:.1f}", f"{r['images_per_s']:.0f}"] for r in result.history]
    table = format_table(["epoch", "train loss", "val loss", "val top-1 %", "val top-5 %", "images/s"], rows,
                         markdown=True)
    ctx.report.add(
        "Training (squeezenet1_1 on digits)",
        f"`squeezelab train squeezenet1_1 --data digits --input-size 8 --batch-size 32 --lr 0.01 "
        f"--epochs {result.history[-1]['epoch'] if result.history else 0}`: small-input stem, conv10 bias "
        f"initialised to 1 (docs/small-inputs.md). Best val top-1 **{result.best_top1:.1f}%** (chance 10%) in "
        f"{result.seconds:.0f}s.\n\n{table}\n\n![curves](train_run/curves.png)")

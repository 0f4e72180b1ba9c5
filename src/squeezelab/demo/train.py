"""The demo's training stage: squeezenet1_1 trained from scratch on scikit-learn's digits."""

from __future__ import annotations

from ..tables import format_table
from ..train.config import TrainConfig
from ..train.engine import train
from .report import DemoContext

DATA = "digits"
INPUT_SIZE = 8
EPOCHS = 6


def train_stage(ctx: DemoContext) -> None:
    """Train squeezenet1_1 on digits at 8 px with the default recipe (6 epochs; ctx.quick: 1 epoch on 200 images)."""
    options = dict(train_limit=200, val_limit=100, epochs=1) if ctx.quick else dict(epochs=EPOCHS)
    result = train(TrainConfig("squeezenet1_1", data=DATA, input_size=INPUT_SIZE, threads=1, progress=False,
                               output=str(ctx.root / "train_run"), overwrite=True, **options))
    ctx.artifacts["checkpoint"] = str(result.best_checkpoint)
    ctx.artifacts["data"] = DATA
    rows = [[r["epoch"], f"{r['train_loss']:.3f}", f"{r['val_loss']:.3f}", f"{r['val_top1']:.1f}",
             f"{r['val_top5']:.1f}", f"{r['images_per_s']:.0f}"] for r in result.history]
    table = format_table(["epoch", "train loss", "val loss", "val top-1 %", "val top-5 %", "images/s"], rows,
                         markdown=True)
    curves = "\n\n![curves](train_run/curves.png)" if (result.run_dir / "curves.png").is_file() else ""
    ctx.report.add(
        "Training (squeezenet1_1 on digits)",
        f"`squeezelab train squeezenet1_1 --data digits --input-size {INPUT_SIZE} "
        f"--epochs {result.history[-1]['epoch'] if result.history else 0}`: default recipe "
        f"(AdamW for SqueezeNet, docs/training.md), "
        f"small-input stem, conv10 bias initialised to 1 (docs/small-inputs.md). "
        f"Best val top-1 **{result.best_top1:.1f}%** (chance 10%) in "
        f"{result.seconds:.0f}s.\n\n{table}{curves}")

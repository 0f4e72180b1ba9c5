"""Demo stage: export the demo's model to ONNX, check it in ONNX Runtime, and time eager vs optimized."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..deploy.bench import BENCH_HEADERS, bench_model, bench_table_rows
from ..export.formats import check_parity
from ..export.onnx import export_onnx
from ..export.timing import machine_info, sgemm_gflops
from ..tables import format_table
from ..weights import build_model
from .report import DemoContext


def _demo_model(ctx: DemoContext) -> tuple[nn.Module, str]:
    checkpoint = ctx.artifacts.get("checkpoint")
    if checkpoint is not None:
        return build_model(checkpoint).eval(), f"the trained checkpoint {Path(checkpoint).name}"
    return build_model("squeezenet1_1").eval(), "squeezenet1_1 (random init: no checkpoint from training)"


def stage(ctx: DemoContext) -> None:
    """Export to ONNX with metadata, report the parity, and bench zoo eager / optimized eager / ONNX Runtime."""
    model, label = _demo_model(ctx)
    meta = model.pretrained_cfg
    size = meta.input_size if meta.preprocess is not None or not ctx.quick else 64
    path = export_onnx(model, ctx.root / "model.onnx", input_size=size, dynamic_batch=True, meta=meta)
    error = check_parity(model, path, "onnx", size, batch=2)
    threads = torch.get_num_threads()
    sgemm = sgemm_gflops(threads, n=256 if ctx.quick else 1024)
    rows = bench_model(model, 1, ["zoo", "eager", "onnxruntime"], input_size=size, threads=threads,
                       reps=3 if ctx.quick else 20, max_seconds=2 if ctx.quick else 20, sgemm=sgemm)
    info = machine_info()
    ctx.artifacts["onnx"] = path
    table = format_table(BENCH_HEADERS, bench_table_rows(rows), markdown=True)
    ctx.report.add("Export and fast inference", f"""
Exported {label} to `{path.name}` (ONNX opset 17, batch axis symbolic, input {size}x{size},
{path.stat().st_size / 1e6:.2f} MB, with the model's pretrained config as metadata).
ONNX Runtime vs eager on a random batch of 2: max abs logit difference {error:.1e} (limit 1e-4).

Batch-1 latency on this machine ({info['cpu']}, {threads} threads, load average {info['load_average'][0]:.2f},
sgemm {sgemm:.0f} GFLOP/s). `eager` is `squeezelab.optimize(model, backend="eager")` (BatchNorm folded,
channels_last); `onnxruntime` runs the exported graph. Rerun with
`squeezelab bench squeezenet1_0 squeezenet1_1 --batch 1,32` (docs/inference.md).

{table}
""")

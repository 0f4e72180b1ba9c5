"""Demo stage: Deep Compression of the demo's trained model (or the real Deep Compression SqueezeNet)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import SqueezelabError
from ..tables import format_table
from ..weights.checkpoint import CheckpointMeta
from ..weights.loader import build_model, load_weights, model_from_state
from ..weights.registry import fetch_weights
from ..compress.pipeline import compress_model
from .report import DemoContext


def _source(ctx: DemoContext) -> tuple[dict[str, torch.Tensor], CheckpointMeta, str]:
    checkpoint = ctx.artifacts.get("checkpoint")
    if checkpoint is not None:
        state, meta = load_weights(checkpoint)
        return state, meta, f"the model trained by the demo ({Path(str(checkpoint)).name})"
    if not ctx.quick:
        try:
            path = fetch_weights("squeezenet1_0.deep_compression", allow_download=False)
            state, meta = load_weights(path)
            return state, meta, "the published Deep Compression SqueezeNet v1.0 (no trained model in this run)"
        except SqueezelabError:
            pass
    torch.manual_seed(0)
    model = build_model("squeezenet1_1", 10)
    return model.state_dict(), model.pretrained_cfg, "an untrained squeezenet1_1 (no trained model)"


def stage(ctx: DemoContext) -> None:
    """Compress at 8 and (unless quick) 6 bits, reload the .sqz, and tabulate the size per stage."""
    state, meta, what = _source(ctx)
    density = None if any((v == 0).float().mean() > 0.5 for k, v in state.items() if v.dim() >= 2) else 0.5
    sections = []
    for bits in (8,) if ctx.quick else (8, 6):
        out = ctx.root / f"compressed_{bits}bit.sqz"
        report = compress_model(state, meta, bits=bits, density=density, output=out)
        model = build_model(out)
        x = torch.zeros(1, meta.in_chans, meta.input_size, meta.input_size)
        with torch.no_grad():
            exact = torch.equal(model(x), model_from_state(report.compressed.state_dict(), meta)(x))
        table = format_table(list(report.HEADERS), report.rows(), markdown=True)
        sections.append(f"**{bits}-bit codebooks**, density {report.compressed.density:.1%} -> `{out.name}` "
                        f"(decoded model reproduces the quantized weights exactly: {'yes' if exact else 'NO'})\n\n"
                        f"{table}")
        ctx.artifacts[f"sqz_{bits}bit"] = out
    pruning = "kept the existing zeros" if density is None else f"magnitude-pruned every layer to {density:.0%}"
    ctx.report.add("Deep Compression", f"Compressed {what}: {pruning}, k-means weight sharing, Huffman coding "
                   f"(`squeezelab compress`, docs/compression.md). Paper Table 2: 4.8MB -> 0.66MB (8 bit) -> "
                   f"0.47MB (6 bit).\n\n" + "\n\n".join(sections))

"""Deep Compression rows of ``squeezelab claims`` (SqueezeNet paper Table 2).

Sizes only, so the rows take seconds: the real Deep Compression SqueezeNet
(``compressed_SqueezeNet.net``, shared/data README section 2) is re-encoded at
8 and 6 bits with Huffman coding. Accuracy at those widths is measured by
``benchmarks/compression_curve.py`` and the tests (docs/compression.md).
The paper's "MB" is MiB: 1,248,424 x 4 bytes = 4.76 MiB is its "4.8MB".
"""

from __future__ import annotations

from ..analysis.claims import ClaimRow, claim
from ..errors import SqueezelabError
from ..models import create_model
from ..weights.loader import load_weights
from ..weights.registry import fetch_weights
from .pipeline import MIB, compress_model

DC_WEIGHTS = "squeezenet1_0.deep_compression"
SECTION = "Deep Compression (SqueezeNet paper Table 2)"


def _dense_bytes() -> int:
    return 4 * sum(p.numel() for p in create_model("squeezenet1_0").parameters())


@claim(SECTION)
def deep_compression_sizes() -> list[ClaimRow]:
    """Re-encode the real Deep Compression file at 8 and 6 bits and compare the sizes with Table 2."""
    dense = _dense_bytes()
    rows = [ClaimRow("SqueezeNet fp32 is 4.8MB", "4.8MB", f"{dense / MIB:.2f} MiB ({dense:,} B)",
                     abs(dense / MIB - 4.8) <= 0.05, "1,248,424 params x 4 B, counted from the model")]
    try:
        path = fetch_weights(DC_WEIGHTS, allow_download=False)
    except SqueezelabError as exc:
        return rows + [ClaimRow("Deep Compression sizes", "0.66MB / 0.47MB", "not available", None, str(exc))]
    state, meta = load_weights(path)
    original = path.stat().st_size
    report8 = compress_model(state, meta, bits=8)
    rows.append(ClaimRow(
        "the published Deep Compression file is 0.66MB (8 bit, 33% dense)", "0.66MB",
        f"{original / MIB:.3f} MiB; our 8-bit stage accounting: {report8.sizes[2][1] / MIB:.3f} MiB",
        original / MIB <= 0.66 * 1.02,
        f"file {original:,} B; codes 8 bit + 4-bit relative index + codebooks + fp32 biases, "
        f"density {report8.compressed.density:.1%}"))
    for bits, paper_mb, paper_x in ((8, 0.66, 363), (6, 0.47, 510)):
        report = report8 if bits == 8 else compress_model(state, meta, bits=bits)
        size = report.file_bytes
        rows.append(ClaimRow(
            f"Deep Compression SqueezeNet at {bits} bits fits in {paper_mb}MB", f"{paper_mb}MB",
            f"{size / MIB:.3f} MiB ({size:,} B .sqz)", size / MIB <= paper_mb,
            f"re-encoded from the published file with Huffman coding; {dense / size:.0f}x smaller than fp32 "
            f"SqueezeNet (paper: {paper_x}x vs AlexNet = {paper_x / 50:.1f}x vs SqueezeNet's 4.8MB)"))
    return rows

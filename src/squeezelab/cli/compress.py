"""``squeezelab compress``: Deep Compression of any weights into a ``.sqz`` file, with a per-stage size table."""

from __future__ import annotations

import argparse
import json

from ..errors import SqueezelabError
from ..io import atomic_write_text
from ..tables import format_table
from ..weights.loader import check_architecture, load_weights


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compress", help="Deep Compression (prune, k-means weight sharing, Huffman) to .sqz")
    p.add_argument("model", help="model name (checked against the weights' architecture)")
    p.add_argument("--weights", required=True, help="registered name or any weights file (checkpoint, .net, .sqz, ...)")
    p.add_argument("-o", "--output", required=True, help="the .sqz file to write")
    p.add_argument("--bits", type=int, default=8, help="codebook bits per layer, 1-8 (paper: 8 or 6; default 8)")
    p.add_argument("--density", type=float, help="fraction of weights to keep, e.g. 0.33 (default: keep the "
                   "current nonzeros, which re-encodes an already pruned model)")
    p.add_argument("--scope", choices=("layer", "global"), default="layer",
                   help="prune every layer to --density (default) or use one global magnitude threshold")
    p.add_argument("--index-bits", type=int, default=4, help="relative sparse index width (default 4, as the "
                   "original Deep Compression SqueezeNet file)")
    p.add_argument("--codebook", choices=("optimal", "linear"), default="optimal", help="k-means: exact 1-D "
                   "optimum (default) or the paper's linear-init Lloyd")
    p.add_argument("--calibration", metavar="DIR", help="correct the biases for the compression error using the "
                   "mean activations on these images (no labels; 'skimage' = scikit-image's sample photos)")
    p.add_argument("--masks", metavar="FILE", help="use these pruning masks (e.g. after fine-tuning) instead of "
                   "--density")
    p.add_argument("--save-masks", metavar="FILE", help="write the pruning masks (safetensors) for fine-tuning")
    p.add_argument("--data", metavar="DIR", help="also measure top-1/top-5 before and after on this image folder")
    p.add_argument("--json", metavar="OUT", help="write the size table (and accuracies) as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..compress.pipeline import compress_model
    from ..compress.prune import load_masks, magnitude_masks, save_masks

    if args.masks and args.density is not None:
        raise SqueezelabError("give either --masks or --density, not both")
    state, meta = load_weights(args.weights)
    check_architecture(meta, args.model, args.weights)
    masks = load_masks(args.masks) if args.masks else None
    if args.save_masks:
        masks = masks or magnitude_masks(state, args.density, scope=args.scope)
        save_masks(args.save_masks, masks)
    calibration = None
    if args.calibration:
        from ..compress.measure import folder_images, skimage_photos

        calibration = skimage_photos() if args.calibration == "skimage" else folder_images(args.calibration, 32)
    report = compress_model(state, meta, bits=args.bits, density=args.density, index_bits=args.index_bits,
                            scope=args.scope, masks=masks, output=args.output, method=args.codebook,
                            calibration=calibration)
    cm = report.compressed
    print(f"{meta.architecture} from {args.weights}: {cm.kept:,} of {sum(t.numel for t in cm.shared.values()):,} "
          f"weights kept (density {cm.density:.1%}), {args.bits}-bit codebooks, {args.index_bits}-bit relative index"
          + (f", biases corrected on {len(calibration)} images" if calibration else ""))
    rows = report.rows()
    accuracy = None
    if args.data:
        accuracy = _accuracy(state, report, args.data)
        for row, key in zip(rows, ("dense", "pruned", "decoded", "decoded")):
            row.append(f"{accuracy[key][0]:.1f}")
    headers = list(report.HEADERS) + (["top-1 %"] if accuracy else [])
    print(format_table(headers, rows))
    print(f"wrote {args.output} ({report.file_bytes:,} bytes)")
    if args.save_masks:
        print(f"wrote masks {args.save_masks}")
    if args.json:
        payload = {"model": meta.architecture, "weights": str(args.weights), "output": str(args.output),
                   "bits": args.bits, "density": cm.density, "index_bits": args.index_bits,
                   "stages": dict(report.sizes), "accuracy": accuracy}
        atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    return 0


def _accuracy(state: dict, report, data_dir: str) -> dict[str, tuple[float, float]]:
    """Top-1/top-5 of the original, the pruned (fp32) and the decoded ``.sqz`` (loaded back) on ``data_dir``."""
    from ..compress.measure import ImageSet
    from ..compress.prune import apply_masks
    from ..weights.loader import load_model

    images = ImageSet.load(data_dir, report.meta)
    model = report.meta.build_model()
    model.load_state_dict(state)
    out = {"dense": images.accuracy(model)}
    pruned = {k: v.clone() for k, v in state.items()}
    apply_masks(pruned, {k: t.decode() != 0 for k, t in report.compressed.shared.items()})
    model.load_state_dict(pruned)
    out["pruned"] = images.accuracy(model)
    decoded, _ = load_model(report.path)
    out["decoded"] = images.accuracy(decoded)
    return out

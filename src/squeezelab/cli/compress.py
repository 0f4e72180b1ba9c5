"""``squeezelab compress``: Deep Compression of any weights into a ``.sqz`` file, with a per-stage size table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import torch

from ..errors import SqueezelabError
from ..io import atomic_write_text
from ..tables import format_table
from ..weights.loader import build_model, check_architecture, load_weights, model_from_state
from .args import check_outputs, float_range, fraction, int_range, weights_inputs

if TYPE_CHECKING:
    from ..compress.pipeline import CompressionReport
    from ..weights.checkpoint import CheckpointMeta


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compress", help="Deep Compression (prune, k-means weight sharing, Huffman) to .sqz")
    p.add_argument("model", help="model name (checked against the weights' architecture)")
    p.add_argument("--weights", required=True, help="registered name or any weights file (checkpoint, .net, .sqz, ...)")
    p.add_argument("-o", "--output", required=True, help="the .sqz file to write")
    p.add_argument("--bits", type=int_range(1, 8, what="a bit width"), default=8,
                   help="codebook bits per layer, 1-8 (paper: 8 or 6; default 8)")
    p.add_argument("--density", type=fraction, help="fraction of weights to keep, e.g. 0.33 (default: keep the "
                   "current nonzeros, which re-encodes an already pruned model)")
    p.add_argument("--scope", choices=("layer", "global"), default="layer",
                   help="prune every layer to --density (default) or use one global magnitude threshold")
    p.add_argument("--index-bits", type=int_range(1, 8, what="a bit width"), default=4,
                   help="relative sparse index width (default 4, as the original Deep Compression SqueezeNet file)")
    p.add_argument("--codebook", choices=("optimal", "linear"), default="optimal", help="k-means: exact 1-D "
                   "optimum (default) or the paper's linear-init Lloyd")
    p.add_argument("--calibration", metavar="DIR", help="fit each layer's codebook and bias to the uncompressed "
                   "layer's outputs on these images, no labels: an image folder, cifar10:DIR (the CIFAR-10 training "
                   "zip's images) or 'skimage' (scikit-image's photos, the default when scikit-image is installed); "
                   "'none' = no calibration")
    p.add_argument("--calibration-limit", type=int_range(1, what="an image count"), default=32,
                   help="calibration images used, evenly spaced over the folder or zip (default 32)")
    p.add_argument("--refine", choices=("least-squares", "bias"), default="least-squares",
                   help="with --calibration: least-squares centroids and biases (default) or bias correction only")
    p.add_argument("--finetune", metavar="DATA", help="retrain the centroids (masks and codes held) on these "
                   "images: distillation from the uncompressed model, cross-entropy where files are named by wnid; "
                   "an image folder, or cifar10:DIR for the CIFAR-10 training zip's images (unlabeled)")
    p.add_argument("--finetune-epochs", type=int_range(1, what="an epoch count"), default=2,
                   help="fine-tuning epochs (default 2)")
    p.add_argument("--finetune-lr", type=float_range(0.0, low_open=True), default=1e-3,
                   help="centroid learning rate on the mean gradient of the weights sharing it (default 0.001)")
    p.add_argument("--finetune-limit", type=int_range(1, what="an image count"), default=64,
                   help="fine-tuning images, evenly spaced over the folder or zip (default 64)")
    p.add_argument("--fidelity", metavar="DIR", help="report agreement, KL and top-1 against the uncompressed "
                   "model after each stage: on the standard set when DIR holds cifar10_test_jpeg.zip and "
                   "images/imagenet_samples_100 (shared/data), else on DIR's images")
    p.add_argument("--fidelity-limit", type=int_range(1, what="an image count"),
                   help="CIFAR-10 images of the standard set (or images of DIR) to use (default all)")
    p.add_argument("--masks", metavar="FILE", help="use these pruning masks (e.g. after fine-tuning) instead of "
                   "--density")
    p.add_argument("--save-masks", metavar="FILE", help="write the pruning masks (safetensors) for fine-tuning")
    p.add_argument("--data", metavar="DIR", help="also measure top-1/top-5 before and after on this image folder")
    p.add_argument("--json", metavar="OUT", help="write the size table (and accuracies) as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..compress.measure import calibration_set, default_calibration
    from ..compress.pipeline import compress_model
    from ..compress.prune import check_masks, load_masks, magnitude_masks, save_masks

    if args.masks and args.density is not None:
        raise SqueezelabError("give either --masks or --density, not both")
    inputs = [*weights_inputs(args.weights), args.masks]
    check_outputs(args.output, args.save_masks, args.json, inputs=inputs)
    state, meta = load_weights(args.weights)
    check_architecture(meta, args.model, args.weights)
    masks = load_masks(args.masks) if args.masks else None
    if masks is not None:
        check_masks(masks, state)  # before anything is written
    if args.save_masks:
        masks = masks or magnitude_masks(state, args.density, scope=args.scope)
        save_masks(args.save_masks, masks)
    calibration = None
    if args.calibration is None:
        calibration, note = default_calibration(meta)
        print(note)
    elif args.calibration != "none":
        calibration = calibration_set(args.calibration, args.calibration_limit)
    finetune = None
    if args.finetune:
        from ..data.datasets import parse_data_source
        from ..data.sources import cifar10_split, folder_images

        source = parse_data_source(args.finetune)
        preprocess = meta.require_preprocess("--finetune")
        tune = (cifar10_split(source.location, "train").unlabelled() if source.kind == "cifar10"
                else folder_images(args.finetune)).subset(args.finetune_limit)
        finetune = (tune.batches(preprocess).tensors(), torch.tensor(tune.labels))
    stages: dict[str, dict] = {}
    report = compress_model(state, meta, bits=args.bits, density=args.density, index_bits=args.index_bits,
                            scope=args.scope, masks=masks, output=args.output, method=args.codebook,
                            calibration=calibration, refine=args.refine, finetune=finetune,
                            finetune_epochs=args.finetune_epochs, finetune_lr=args.finetune_lr,
                            on_stage=lambda name, cm: stages.__setitem__(name, cm.state_dict()))
    cm = report.compressed
    print(f"{meta.architecture} from {args.weights}: {cm.kept:,} of {sum(t.numel for t in cm.shared.values()):,} "
          f"weights kept (density {cm.density:.1%}), {args.bits}-bit codebooks, {args.index_bits}-bit relative index"
          + (f", {args.refine} calibration on {len(calibration)} images" if calibration else "")
          + (f", centroids fine-tuned on {len(finetune[0])} images" if finetune else ""))
    rows = report.rows()
    accuracy = None
    if args.data:
        accuracy = _accuracy(state, report, args.data)
        for row, key in zip(rows, ("dense", "pruned", "decoded", "decoded")):
            row.append(f"{accuracy[key][0]:.1f}")
    headers = list(report.HEADERS) + (["top-1 %"] if accuracy else [])
    print(format_table(headers, rows))
    fidelity = None
    if args.fidelity or finetune:
        fidelity = _fidelity(state, meta, stages, args.fidelity, args.fidelity_limit, finetune)
    print(f"wrote {args.output} ({report.file_bytes:,} bytes)")
    if args.save_masks:
        print(f"wrote masks {args.save_masks}")
    if args.json:
        payload = {"model": meta.architecture, "weights": str(args.weights), "output": str(args.output),
                   "bits": args.bits, "density": cm.density, "index_bits": args.index_bits,
                   "stages": dict(report.sizes), "accuracy": accuracy, "fidelity": fidelity}
        atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n", inputs=inputs)
    return 0


def _accuracy(state: dict, report: CompressionReport, data_dir: str) -> dict[str, tuple[float, float]]:
    """Top-1/top-5 of the original, the pruned (fp32) and the decoded ``.sqz`` (loaded back) on ``data_dir``."""
    from ..compress.measure import accuracy, labelled_batches
    from ..compress.prune import apply_masks

    images = labelled_batches(data_dir, report.meta)
    out = {"dense": accuracy(model_from_state(state, report.meta), images)}
    pruned = {k: v.clone() for k, v in state.items()}
    apply_masks(pruned, {k: t.decode() != 0 for k, t in report.compressed.shared.items()})
    out["pruned"] = accuracy(model_from_state(pruned, report.meta), images)
    out["decoded"] = accuracy(build_model(report.path), images)
    return out


def _fidelity(state: dict, meta: CheckpointMeta, stages: dict[str, dict], data_dir: Optional[str], limit: Optional[int],
              finetune: Optional[tuple]) -> dict[str, dict]:
    """Print and return agreement, KL and top-1 of every stage against the uncompressed model."""
    from ..compress.fidelity import CIFAR_TEST_ZIP, IMAGENET_SAMPLES, collect_logits, compare, standard_images
    from ..data.sources import folder_images

    if data_dir is None:
        images, labels, where = finetune[0], finetune[1], f"the {len(finetune[0])} fine-tuning images"
        batches = [(images[i:i + 64], labels[i:i + 64]) for i in range(0, len(images), 64)]
    else:
        root = Path(data_dir)
        standard = (root / CIFAR_TEST_ZIP).is_file() and (root / IMAGENET_SAMPLES).is_dir()
        preprocess = meta.require_preprocess("--fidelity")
        batches = (standard_images(preprocess, data_dir=root, limit=limit) if standard
                   else folder_images(root).subset(limit).batches(preprocess))
        where = f"{len(batches):,} images of {'the standard set' if standard else root}"
    models = {"uncompressed": state, **stages}
    logits, labels = collect_logits({name: model_from_state(weights, meta) for name, weights in models.items()},
                                    batches)
    out = {name: compare(logits["uncompressed"], logits[name], labels) for name in stages}
    print(f"fidelity to the uncompressed model on {where}:")
    print(format_table(["stage", "agreement %", "mean KL", "top-1 % (uncompressed -> stage)"],
                       [[name, f"{f.agreement:.2f}", f"{f.mean_kl:.4f}",
                         f"{f.top1_parent:.1f} -> {f.top1_child:.1f} ({f.labelled} labelled)"
                         if f.top1_parent is not None else "-"] for name, f in out.items()]))
    return {name: f.as_dict() for name, f in out.items()}

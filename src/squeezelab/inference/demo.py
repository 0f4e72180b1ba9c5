"""Demo stage: the real pretrained weights on photos that ship with scikit-image."""

from __future__ import annotations

import numpy as np
from skimage import data as skdata

from ..demo import DemoContext
from ..errors import SqueezelabError
from ..tables import format_table
from ..weights import get_weights_entry, list_weights, load_model
from ..weights.registry import WEIGHTS_DIR_ENV, fetch_weights
from .predict import predict

#: skimage photos whose ImageNet class all three weight sets agree on (shared/data README section 5.1).
PHOTOS = {
    "chelsea": (skdata.chelsea, "tabby / tiger cat / Egyptian cat"),
    "coffee": (skdata.coffee, "espresso"),
    "stereo_motorcycle": (lambda: skdata.stereo_motorcycle()[0], "moped / motor scooter"),
    "camera": (lambda: np.stack([skdata.camera()] * 3, axis=-1), "tripod"),
}


def pretrained_stage(ctx: DemoContext) -> None:
    """Predict the skimage photos with every registered weight set available offline (no download)."""
    available, missing = [], []
    for name in list_weights():
        try:
            fetch_weights(name, allow_download=False)
            available.append(name)
        except SqueezelabError:
            missing.append(name)
    ctx.artifacts["pretrained_weights"] = available
    how = (f"Weights not found locally: {', '.join(missing) or 'none'}. To get them run "
           f"`squeezelab predict MODEL --weights NAME IMAGE` once with network access (it downloads into the "
           f"cache and checks the sha256), or set `{WEIGHTS_DIR_ENV}` to a folder holding the upstream files "
           f"(`squeezelab convert --list` names them).")
    if not available:
        ctx.report.add("Pretrained weights", f"No pretrained weights are available offline on this machine.\n\n{how}")
        return
    photos = list(PHOTOS.items())[: 3 if ctx.quick else None]
    images = [loader() for _, (loader, _) in photos]
    columns = {}
    for name in available:
        model, meta = load_model(name)
        columns[name] = predict(model, meta, images, topk=3)
    rows = []
    for i, (photo, (_, expected)) in enumerate(photos):
        cells = [", ".join(f"{s.name} {s.probability:.2f}" for s in columns[name][i]) for name in available]
        rows.append([photo, expected, *cells])
    table = format_table(["photo", "expected", *available], rows, markdown=True)
    lines = []
    for name in available:
        entry = get_weights_entry(name)
        pre = entry.preprocess
        lines.append(f"- `{name}`: {entry.description}; preprocessing {pre.describe()}")
    entries = "\n".join(lines)
    ctx.report.add("Pretrained weights", f"Top-3 (softmax) of scikit-image photos with the real weights decoded from "
                   f"their upstream files.\n\n{entries}\n\n{table}" + (f"\n\n{how}" if missing else ""))

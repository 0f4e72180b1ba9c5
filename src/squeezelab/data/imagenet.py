"""The 1000 ImageNet classes, shipped inside the package (``squeezelab/data/imagenet_synset_words.txt``).

Line i is class i as ``wnid name, synonyms``: the standard order of Caffe,
torchvision and timm (the sorted WordNet ids of the ILSVRC-2012 classes).
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from typing import Optional

#: ImageNet's validation/sample file naming: the class's wnid, an underscore, anything (``n01440764_123.JPEG``).
_WNID_FILE_NAME = re.compile(r"^(n\d{8})_")


@lru_cache(maxsize=1)
def _synsets() -> tuple[tuple[str, str], ...]:
    text = resources.files("squeezelab.data").joinpath("imagenet_synset_words.txt").read_text(encoding="utf-8")
    rows = []
    for line in text.splitlines():
        if line.strip():
            wnid, names = line.split(" ", 1)
            rows.append((wnid, names.split(",")[0].strip()))
    return tuple(rows)


def imagenet_wnids() -> list[str]:
    """WordNet ids (``n01440764`` ...) in class-index order."""
    return [wnid for wnid, _ in _synsets()]


@lru_cache(maxsize=1)
def imagenet_wnid_index() -> dict[str, int]:
    """WordNet id -> class index (treat as read-only: it is shared)."""
    return {wnid: index for index, (wnid, _) in enumerate(_synsets())}


def imagenet_label_of_file(name: str) -> Optional[int]:
    """The class index of a file named ``nXXXXXXXX_*`` after an ImageNet wnid, else None."""
    match = _WNID_FILE_NAME.match(name)
    return imagenet_wnid_index().get(match.group(1)) if match else None


def imagenet_categories() -> list[str]:
    """Short class names (the first synonym, e.g. ``tench``, ``Egyptian cat``) in class-index order."""
    return [name for _, name in _synsets()]

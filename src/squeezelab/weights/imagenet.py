"""The 1000 ImageNet classes, shipped inside the package (``squeezelab/data/imagenet_synset_words.txt``).

Line i is class i as ``wnid name, synonyms``: the standard order of Caffe,
torchvision and timm (the sorted WordNet ids of the ILSVRC-2012 classes).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources


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


def imagenet_categories() -> list[str]:
    """Short class names (the first synonym, e.g. ``tench``, ``Egyptian cat``) in class-index order."""
    return [name for _, name in _synsets()]

"""The native checkpoint: a safetensors file whose metadata rebuilds the model, and that metadata as the
model's pretrained config.

Metadata keys (all strings, as safetensors requires):
``format`` = "squeezelab-checkpoint/1", ``architecture`` (registry name),
``num_classes``, ``in_chans``, ``model_kwargs`` (JSON of create_model
overrides), ``preprocess`` (JSON of :class:`~squeezelab.data.preprocess.Preprocess`;
absent when unknown, e.g. for an untrained model), ``categories`` (JSON list of class
names), ``source`` and ``source_sha256`` (where the weights came from), plus any extra
string keys a stage adds. Loading never unpickles anything.

:class:`CheckpointMeta` is also what :func:`squeezelab.weights.build_model` puts on every model
it returns, as ``model.pretrained_cfg`` (timm's ``PretrainedCfg``): the one record every stage
reads the input size, channels, preprocessing, classes and architecture options from
(:func:`pretrained_cfg_of`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ..data.preprocess import Preprocess
from ..errors import SqueezelabError
from ..io import PathLike, atomic_path, target_name
from ..models import resolve_model

FORMAT = "squeezelab-checkpoint/1"
#: The input side of an untrained ``small_input=True`` model: CIFAR-10's 32 px, what that stem is for.
SMALL_INPUT_SIZE = 32


@dataclass
class CheckpointMeta:
    """What a set of weights says about itself: the pretrained config of the model built from them.

    ``preprocess`` is None when nobody knows how the model's inputs were made (an untrained
    architecture, or a checkpoint written without it); a stage that needs it asks for it with
    :meth:`require_preprocess`, which fails with a one-line error instead of guessing ImageNet's.
    """

    architecture: str
    num_classes: int
    in_chans: int = 3
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    preprocess: Optional[Preprocess] = None
    categories: list[str] = field(default_factory=list)
    source: str = ""
    source_sha256: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def small_input(self) -> bool:
        """Whether the model was built with the stride-1 stem for 8-64 px images."""
        return bool(self.model_kwargs.get("small_input", False))

    @property
    def input_size(self) -> int:
        """The square input side: the preprocessing's crop, else the architecture's design size
        (:data:`SMALL_INPUT_SIZE` with ``small_input``)."""
        if self.preprocess is not None:
            return self.preprocess.crop
        return SMALL_INPUT_SIZE if self.small_input else resolve_model(self.architecture).input_size

    def require_preprocess(self, purpose: str) -> Preprocess:
        """The preprocessing, or a one-line error saying that ``purpose`` needs it."""
        if self.preprocess is None:
            raise SqueezelabError(f"{purpose} needs the preprocessing of the weights, and this {self.architecture} "
                                  f"model has none (untrained, or a checkpoint without it); build it from "
                                  f"weights with squeezelab.build_model(NAME_OR_FILE) or set "
                                  f"model.pretrained_cfg.preprocess")
        return self.preprocess

    def to_strings(self) -> dict[str, str]:
        strings = {
            **self.extra,
            "format": FORMAT,
            "architecture": self.architecture,
            "num_classes": str(self.num_classes),
            "in_chans": str(self.in_chans),
            "model_kwargs": json.dumps(self.model_kwargs),
            "categories": json.dumps(self.categories),
            "source": self.source,
            "source_sha256": self.source_sha256,
        }
        if self.preprocess is not None:
            strings["preprocess"] = self.preprocess.to_json()
        return strings

    @classmethod
    def from_strings(cls, meta: Mapping[str, str]) -> "CheckpointMeta":
        known = {"format", "architecture", "num_classes", "in_chans", "model_kwargs", "preprocess", "categories",
                 "source", "source_sha256"}
        return cls(
            architecture=meta["architecture"],
            num_classes=int(meta["num_classes"]),
            in_chans=int(meta.get("in_chans", "3")),
            model_kwargs=json.loads(meta.get("model_kwargs", "{}")),
            preprocess=Preprocess.from_json(meta["preprocess"]) if "preprocess" in meta else None,
            categories=json.loads(meta.get("categories", "[]")),
            source=meta.get("source", ""),
            source_sha256=meta.get("source_sha256", ""),
            extra={k: v for k, v in meta.items() if k not in known},
        )


def save_checkpoint(path: PathLike, state_dict: Mapping[str, torch.Tensor], meta: CheckpointMeta,
                    inputs: Iterable[PathLike] = ()) -> None:
    """Write ``state_dict`` and ``meta`` to ``path`` atomically as safetensors (never over one of ``inputs``)."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    with atomic_path(path, inputs) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=meta.to_strings())
        except SafetensorError as exc:  # safetensors reports write errors (disk full, EFBIG) as its own type
            raise SqueezelabError(f"cannot write {target_name(path)}: {exc}; nothing was written there") from None


def read_checkpoint(path: PathLike) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    """Read a native checkpoint; a clear error if it is not one."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw_meta: Optional[dict[str, str]] = handle.metadata()
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise SqueezelabError(f"{path} is not a readable safetensors checkpoint ({exc})") from None
    if not raw_meta or raw_meta.get("format") != FORMAT:
        raise SqueezelabError(f"{path} is a safetensors file but not a squeezelab checkpoint (no '{FORMAT}' metadata)")
    try:
        return state, CheckpointMeta.from_strings(raw_meta)
    except (KeyError, TypeError, ValueError) as exc:
        raise SqueezelabError(f"{path} has unreadable squeezelab metadata ({type(exc).__name__}: {exc})") from None



def pretrained_cfg_of(model: nn.Module) -> CheckpointMeta:
    """``model.pretrained_cfg``; a one-line error for a model that was not made by ``build_model``."""
    cfg = model.__dict__.get("pretrained_cfg")
    if not isinstance(cfg, CheckpointMeta):
        raise SqueezelabError(f"this {type(model).__name__} has no pretrained_cfg; build it with "
                              f"squeezelab.build_model(NAME_OR_FILE) or set model.pretrained_cfg to a CheckpointMeta")
    return cfg

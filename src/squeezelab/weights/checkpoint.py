"""The native checkpoint: a safetensors file whose metadata rebuilds the model.

Metadata keys (all strings, as safetensors requires):
``format`` = "squeezelab-checkpoint/1", ``architecture`` (registry name),
``num_classes``, ``in_chans``, ``model_kwargs`` (JSON of create_model
overrides), ``preprocess`` (JSON of :class:`~squeezelab.data.preprocess.Preprocess`),
``categories`` (JSON list of class names), ``source`` and ``source_sha256``
(where the weights came from), plus any extra string keys a stage adds.
Loading never unpickles anything.
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
from ..models import create_model

FORMAT = "squeezelab-checkpoint/1"


@dataclass
class CheckpointMeta:
    """What a native checkpoint says about its weights."""

    architecture: str
    num_classes: int
    in_chans: int = 3
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    preprocess: Preprocess = field(default_factory=Preprocess)
    categories: list[str] = field(default_factory=list)
    source: str = ""
    source_sha256: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def to_strings(self) -> dict[str, str]:
        return {
            **self.extra,
            "format": FORMAT,
            "architecture": self.architecture,
            "num_classes": str(self.num_classes),
            "in_chans": str(self.in_chans),
            "model_kwargs": json.dumps(self.model_kwargs),
            "preprocess": self.preprocess.to_json(),
            "categories": json.dumps(self.categories),
            "source": self.source,
            "source_sha256": self.source_sha256,
        }

    @classmethod
    def from_strings(cls, meta: Mapping[str, str]) -> "CheckpointMeta":
        known = {"format", "architecture", "num_classes", "in_chans", "model_kwargs", "preprocess", "categories",
                 "source", "source_sha256"}
        return cls(
            architecture=meta["architecture"],
            num_classes=int(meta["num_classes"]),
            in_chans=int(meta.get("in_chans", "3")),
            model_kwargs=json.loads(meta.get("model_kwargs", "{}")),
            preprocess=Preprocess.from_json(meta["preprocess"]) if "preprocess" in meta else Preprocess(),
            categories=json.loads(meta.get("categories", "[]")),
            source=meta.get("source", ""),
            source_sha256=meta.get("source_sha256", ""),
            extra={k: v for k, v in meta.items() if k not in known},
        )

    def build_model(self) -> nn.Module:
        """An untrained model of this checkpoint's architecture."""
        return create_model(self.architecture, num_classes=self.num_classes, in_chans=self.in_chans,
                            **self.model_kwargs)


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


def load_checkpoint_model(path: PathLike) -> tuple[nn.Module, CheckpointMeta]:
    """Build the checkpoint's architecture and load its weights (strict)."""
    state, meta = read_checkpoint(path)
    model = meta.build_model()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "state dict mismatch"
        raise SqueezelabError(f"{path} does not fit {meta.architecture}: {first}") from None
    return model, meta

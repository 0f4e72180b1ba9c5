"""The model registry: one name (plus paper aliases) per architecture, timm style.

``create_model(name, num_classes=..., in_chans=..., **overrides)`` builds a
model; ``list_models(pattern)`` lists the canonical names. Each entry carries
its paper, the table its numbers come from, a one-line description, whether
it accepts ``small_input=True`` and a ``default_cfg`` holding only its design
input size (preprocessing belongs to each set of weights, in
:mod:`squeezelab.weights.registry`, or to a checkpoint's metadata). This module builds architectures only; ``squeezelab.create_model``
(:func:`squeezelab.weights.create_model`) adds ``weights=``.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from torch import nn

from ..errors import SqueezelabError


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture."""

    name: str
    builder: Callable[..., nn.Module]
    description: str
    paper: str
    table: str
    aliases: tuple[str, ...] = ()
    default_cfg: dict[str, Any] = field(default_factory=dict)
    #: ``create_model(name, small_input=True)`` swaps the stride-2 stem for a stride-1 one (8-64 px images).
    small_input: bool = False
    #: ``tracer(input_hw, **overrides)`` returns the layer trace of ``create_model(name, **overrides)``
    #: without building it (:func:`squeezelab.models.trace_model`); None: build and trace.
    tracer: Optional[Callable[..., list]] = None

    @property
    def input_size(self) -> int:
        """The side length the model was designed and counted at (224 or 227)."""
        return int(self.default_cfg.get("input_size", 224))


_REGISTRY: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}


def _key(name: str) -> str:
    return name.strip().lower()


def register_model(
    *,
    description: str,
    paper: str,
    table: str,
    aliases: tuple[str, ...] = (),
    default_cfg: Optional[dict[str, Any]] = None,
    small_input: bool = False,
    tracer: Optional[Callable[..., list]] = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a builder function under its own name and the given aliases."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = builder.__name__
        entry = ModelEntry(name, builder, description, paper, table, tuple(aliases), dict(default_cfg or {}),
                           small_input, tracer)
        for key in (name, *aliases):
            if _key(key) in _ALIASES:
                raise RuntimeError(f"model name {key!r} registered twice")
            _ALIASES[_key(key)] = name
        _REGISTRY[name] = entry
        return builder

    return wrap


def resolve_name(name: str) -> str:
    """Map a name or paper alias (case-insensitive) to the canonical model name."""
    canonical = _ALIASES.get(_key(name))
    if canonical is None:
        close = difflib.get_close_matches(_key(name), list(_ALIASES), n=4, cutoff=0.5)
        hint = f"did you mean {', '.join(sorted({_ALIASES[c] for c in close}))}? " if close else ""
        raise SqueezelabError(f"unknown model {name!r}; {hint}run 'squeezelab list' to see all models")
    return canonical


def get_model_entry(name: str) -> ModelEntry:
    """The registry entry for a name or alias."""
    return _REGISTRY[resolve_name(name)]


def list_models(pattern: Optional[str] = None) -> list[str]:
    """Canonical model names, sorted, optionally filtered by a shell-style pattern (``'sqnxt23*'``).

    A pattern without wildcards matches as a substring.
    """
    names = sorted(_REGISTRY)
    if not pattern:
        return names
    if not any(ch in pattern for ch in "*?["):
        pattern = f"*{pattern}*"
    return [n for n in names if fnmatch.fnmatch(n.lower(), pattern.lower())]


def create_model(name: str, *, num_classes: int = 1000, in_chans: int = 3, **overrides: Any) -> nn.Module:
    """Build a registered architecture with fresh weights.

    Args:
        name: canonical name or paper alias, e.g. ``"squeezenet1_1"`` or ``"1.0-SqNxt-23v5"``.
        num_classes: classifier outputs.
        in_chans: input channels (1 for grey images).
        overrides: architecture keyword arguments of the family's constructor,
            e.g. ``small_input=True``, ``dropout=0.2`` or SqueezeNet's ``pct3x3=0.75``.
    """
    if "weights" in overrides:
        raise SqueezelabError("squeezelab.models.create_model builds architectures only; load weights with "
                              "squeezelab.create_model(name, weights=...)")
    entry = get_model_entry(name)
    try:
        model = entry.builder(num_classes=num_classes, in_chans=in_chans, **overrides)
    except (TypeError, ValueError) as exc:
        raise SqueezelabError(f"bad option for model {entry.name!r}: {exc}") from None
    model.model_name = entry.name  # type: ignore[assignment]
    return model

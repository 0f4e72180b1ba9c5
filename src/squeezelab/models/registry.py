"""The model registry: one name (plus paper aliases) per architecture, timm style.

``create_model(name, num_classes=..., in_chans=..., **overrides)`` builds a
model; ``list_models(pattern)`` lists the canonical names. Each entry carries
its paper, the table its numbers come from, a one-line description and a
pretrained-style config (input size, mean/std, crop) used by the data and
weights stages when no weights say otherwise.
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
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a builder function under its own name and the given aliases."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = builder.__name__
        entry = ModelEntry(name, builder, description, paper, table, tuple(aliases), dict(default_cfg or {}))
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


def create_model(
    name: str, *, num_classes: int = 1000, in_chans: int = 3, weights: Optional[str] = None, **overrides: Any
) -> nn.Module:
    """Build a registered model.

    Args:
        name: canonical name or paper alias, e.g. ``"squeezenet1_1"`` or ``"1.0-SqNxt-23v5"``.
        num_classes: classifier outputs.
        in_chans: input channels (1 for grey images).
        overrides: architecture keyword arguments of the family's constructor,
            e.g. ``small_input=True``, ``dropout=0.2`` or SqueezeNet's ``pct3x3=0.75``.
        weights: a registered weights name or a weights file (``docs/weights.md``); the model is built
            from the weights' metadata (checked against ``name``), loaded and put in eval mode; a
            ``num_classes`` other than the default and the weights' own gets a fresh classifier.
    """
    if weights is not None:
        from ..weights import load_model  # lazy: squeezelab.weights imports this module

        model, _ = load_model(weights, name, **overrides)
        if num_classes not in (1000, getattr(model, "num_classes", num_classes)):
            model.reset_classifier(num_classes)
        return model
    entry = get_model_entry(name)
    try:
        model = entry.builder(num_classes=num_classes, in_chans=in_chans, **overrides)
    except TypeError as exc:
        raise SqueezelabError(f"bad option for model {entry.name!r}: {exc}") from None
    except ValueError as exc:
        raise SqueezelabError(f"bad option for model {entry.name!r}: {exc}") from None
    model.model_name = entry.name  # type: ignore[assignment]
    return model

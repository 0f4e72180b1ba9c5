"""One resolver for model names: the zoo (names and paper aliases), the papers' baselines, torchvision.

A model is written ``NAME`` or ``NAME:KEY=VALUE,KEY=VALUE,...``; the keywords go to its
builder (``create_model`` for the zoo, e.g. ``sqnxt23v5_w1:depths=[2,4,14,1],width=1.5``).
A value is JSON where it parses as JSON (``[2,4,14,1]``, ``1.5``, ``true``), else text
(``bypass=simple``). :func:`format_model_spec` writes a name and keywords back in this form,
so a design found by a search is reproduced by ``squeezelab simulate "<spec>"``.

Names resolve in order: the zoo, then :data:`~squeezelab.models.baselines.BASELINES`
(``mobilenet_v1`` and the papers' ``alexnet``, ``vgg19``, ``mobilenet_v2``), then
torchvision's classification models (``resnet18``, ...). ``squeezelab simulate``,
``squeezelab profile`` and ``squeezelab compare`` all resolve names here.
"""

from __future__ import annotations

import ast
import contextlib
import json
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import SqueezelabError
from .baselines import BASELINES, torchvision_model, torchvision_names
from .registry import create_model, get_model_entry

#: The design input size of the baselines and torchvision's models.
DEFAULT_INPUT_SIZE = 224
SOURCES = ("zoo", "baseline", "torchvision")


def _freeze(value: Any) -> Any:
    """A hashable copy: lists become tuples (the builders take either)."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        raise SqueezelabError(f"model keyword values are numbers, text, booleans or lists, not {value!r}")
    return value


def _thaw(value: Any) -> Any:
    return [_thaw(v) for v in value] if isinstance(value, tuple) else value


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model: canonical ``name``, builder keywords, where it comes from and its design input size."""

    name: str
    kwargs: tuple[tuple[str, Any], ...] = ()
    source: str = "zoo"
    input_size: int = DEFAULT_INPUT_SIZE

    @property
    def model_kwargs(self) -> dict[str, Any]:
        """The builder keywords as JSON-ready values (lists, not tuples)."""
        return {key: _thaw(value) for key, value in self.kwargs}

    @property
    def label(self) -> str:
        """``NAME`` or ``NAME:KEY=VALUE,...``: what :func:`resolve_model` reads back into this spec."""
        return format_model_spec(self.name, self.model_kwargs)

    def build(self, meta: bool = False) -> nn.Module:
        """The model without weights; ``meta=True`` builds it on PyTorch's meta device (shapes only, no memory)."""
        kwargs = dict(self.kwargs)
        with torch.device("meta") if meta else contextlib.nullcontext():
            if self.source == "zoo":
                return create_model(self.name, **kwargs)
            builder = BASELINES.get(self.name) if self.source == "baseline" else None
            try:
                model = builder(**kwargs) if builder else torchvision_model(self.name, **kwargs)
            except (TypeError, ValueError) as exc:
                raise SqueezelabError(f"bad option for model {self.name!r}: {exc}") from None
        model.model_name = self.name  # type: ignore[assignment]
        return model


def _split_items(text: str) -> list[str]:
    """``a=1,b=[2,3]`` -> ``["a=1", "b=[2,3]"]``: commas inside brackets or quotes do not split."""
    items, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item.strip() for item in items if item.strip()]


def parse_value(text: str) -> Any:
    """``[2,4]`` -> [2, 4], ``1.5`` -> 1.5, ``true``/``True`` -> True, ``simple`` -> 'simple'."""
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return text


def parse_model_spec(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME[:KEY=VALUE,...]`` as (name, builder keywords)."""
    name, _, rest = text.partition(":")
    if not name.strip():
        raise SqueezelabError(f"model {text!r} has no name; write e.g. sqnxt23v5_w1 or sqnxt23v5_w1:width=1.5")
    kwargs: dict[str, Any] = {}
    for item in _split_items(rest):
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise SqueezelabError(f"model {text!r}: {item!r} is not KEY=VALUE; write e.g. "
                                  "sqnxt23v5_w1:depths=[2,4,14,1],width=1.5")
        kwargs[key.strip()] = parse_value(value.strip())
    return name.strip(), kwargs


def _format_value(value: Any) -> str:
    if isinstance(value, str):
        return value if parse_value(value) == value and "," not in value else json.dumps(value)
    if isinstance(value, tuple):
        value = _thaw(value)
    return json.dumps(value, separators=(",", ":"))


def format_model_spec(name: str, kwargs: dict[str, Any]) -> str:
    """The ``NAME:KEY=VALUE,...`` string that :func:`parse_model_spec` reads back as (name, kwargs)."""
    return name + (":" + ",".join(f"{k}={_format_value(v)}" for k, v in kwargs.items()) if kwargs else "")


def resolve_model(text: str, **kwargs: Any) -> ModelSpec:
    """The :class:`ModelSpec` of a zoo name or alias, a baseline or a torchvision classification name.

    ``text`` may carry keywords (``NAME:KEY=VALUE,...``); ``kwargs`` add to or override them.
    Unknown names are a one-line :class:`SqueezelabError` with suggestions.
    """
    name, parsed = parse_model_spec(text)
    frozen = tuple((key, _freeze(value)) for key, value in {**parsed, **kwargs}.items())
    try:
        entry = get_model_entry(name)
    except SqueezelabError as exc:
        key = name.lower()
        if key in BASELINES:
            return ModelSpec(key, frozen, "baseline")
        if key in torchvision_names():
            return ModelSpec(key, frozen, "torchvision")
        raise SqueezelabError(f"{exc}; the papers' baselines ({', '.join(BASELINES)}) and torchvision's "
                              "classification models (e.g. resnet18) work too") from None
    return ModelSpec(entry.name, frozen, "zoo", entry.input_size)

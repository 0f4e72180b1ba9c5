"""PEP 562 hooks that import a package's names from their modules on first use (docs/architecture.md, "Light import")."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_names(namespace: dict[str, Any], sources: Mapping[str, str]
               ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for the package whose globals are ``namespace``: each name in ``sources``
    (name -> module path) is imported from its module when first used, then kept in ``namespace``."""

    def __getattr__(name: str) -> Any:
        if name not in sources:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(sources[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(sources))

    return __getattr__, __dir__

"""Command-line interface (``squeezelab`` / ``python -m squeezelab``)."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]

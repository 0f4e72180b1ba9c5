"""The one exception type for user mistakes.

Library code raises :class:`SqueezelabError` (or a subclass) for anything the
user can fix: an unknown model name, a missing file, a bad option. The CLI
prints its message on one line and exits non-zero without a traceback; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class SqueezelabError(Exception):
    """A user-fixable problem; the message says what is wrong and how to fix it."""


class InputShapeError(SqueezelabError, ValueError):
    """An input tensor has the wrong rank, channel count or spatial size."""


def one_line(message: str) -> str:
    """``message`` on one line: a line break (from a file name holding one) is shown as ``\\n``."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


def permission_message(exc: PermissionError) -> str:
    """One line for a PermissionError: the path (both paths for a rename) and what to check."""
    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None) or "a file"
    return one_line(f"permission denied: {paths}; check that you may read (and, for an output, write) it and "
                    f"enter every folder above it")

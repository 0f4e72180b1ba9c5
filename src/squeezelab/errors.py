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

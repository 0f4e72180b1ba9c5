"""What every command shares: argparse number types with ranges, one-line usage errors, output checks.

Each numeric option takes one of the types below, so a negative, zero, NaN or
out-of-range value is a usage error before any work starts; ``check_outputs``
refuses output paths that cannot be written (or would overwrite an input)
before the command loads a model.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Callable, Iterable, Literal, NoReturn, Optional

from ..errors import SqueezelabError
from ..io import PathLike, check_output

#: Largest square input side any command accepts: SqueezeNet's activations at 2048 px already take ~2 GB.
MAX_INPUT_SIZE = 2048
#: Largest batch size a command accepts.
MAX_BATCH = 65536
#: Files beside a weights file that its reader may open (OpenVINO and ncnn keep two files).
_PARTNER_SUFFIXES = (".bin", ".xml", ".param")


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (``PROG: error: ...``) and exit 2."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {text} (see '{self.prog} --help')\n")


def int_range(low: Optional[int] = None, high: Optional[int] = None, what: str = "an integer"
              ) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if low is not None and value < low:
            bound = f"at least {low}" if high is None else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {value}")
        return value

    parse.__name__ = what
    return parse


def float_range(low: Optional[float] = None, high: Optional[float] = None, low_open: bool = False,
                high_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite float in the interval from ``low`` to ``high`` (open ends as flagged)."""
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    interval = f"{left}{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}{right}"

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            raise argparse.ArgumentTypeError(f"must be in {interval}, got {value:g}")
        return value

    parse.__name__ = "number"
    return parse


positive_int = int_range(1, what="a positive integer")
positive_float = float_range(0.0, low_open=True)
non_negative_float = float_range(0.0)
fraction = float_range(0.0, 1.0, low_open=True)
input_size = int_range(1, MAX_INPUT_SIZE, what="an input side in pixels")
batch_size = int_range(1, MAX_BATCH, what="a batch size")


def check_outputs(*paths: Optional[PathLike], inputs: Iterable[Optional[PathLike]] = (),
                  kind: Literal["file", "dir"] = "file") -> None:
    """:func:`~squeezelab.io.check_output` for each given path (``None`` skipped), before the work starts."""
    sources = [Path(p) for p in inputs if p]
    given = [Path(p) for p in paths if p is not None]
    for path in given:
        check_output(path, sources, kind=kind)
    for i, path in enumerate(given):
        if any(path.resolve() == other.resolve() for other in given[:i]):
            raise SqueezelabError(f"{path} is given as two different outputs; choose distinct paths")


def weights_inputs(spec: Optional[PathLike]) -> list[Path]:
    """The files a ``--weights`` path may read: the file and its partners (X.xml / X.bin / X.param)."""
    path = Path(spec or "")
    if not path.name:
        return []
    return [path, *(path.with_suffix(s) for s in _PARTNER_SUFFIXES)]


def warn(message: str) -> None:
    """A one-line ``squeezelab: warning: ...`` on stderr."""
    print(f"squeezelab: warning: {message}", file=sys.stderr)


def refuse_onnx(spec: Optional[PathLike], command: str) -> None:
    """A one-line error if ``spec`` is an ONNX model file: ``command`` needs the weights it was exported from."""
    if not spec or not Path(spec).is_file():
        return
    from ..weights.loader import detect_format  # lazy: keeps 'squeezelab --help' fast

    if detect_format(spec)[0] == "onnx":
        raise SqueezelabError(f"{spec} is an ONNX model; {command} works on weights, pass the checkpoint (or "
                              f"registered weights) it was exported from")

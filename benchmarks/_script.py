"""What the benchmark scripts share: the one-line error exit and the JSON result file."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

import torch

from squeezelab.errors import SqueezelabError, one_line
from squeezelab.export.timing import machine_info
from squeezelab.io import atomic_write_text


def exit_status(run: Callable[[], int]) -> int:
    """``run()``'s status, or 2 after a one-line ``error:`` message for a squeezelab error (bad input)."""
    try:
        return run()
    except SqueezelabError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 2


def write_results(path: str, payload: dict[str, Any]) -> None:
    """``payload`` plus the torch thread count and the machine (CPU flags, load) as JSON at ``path``, atomically."""
    record = {**payload, "threads": torch.get_num_threads(), "machine": machine_info()}
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")

"""The papers' claims, measured: a registry of claim functions and the report runner.

Any module registers claims with the :func:`claim` decorator::

    from squeezelab.analysis.claims import ClaimRow, claim

    @claim("SqueezeNet paper")
    def fewer_params_than_alexnet():
        ratio = ...  # computed here, never typed in
        return ClaimRow("50x fewer parameters than AlexNet", paper="50x",
                        measured=f"{ratio:.1f}x", holds=ratio >= 50 * 0.95, note="...")

A claim function takes no arguments (or one keyword-only ``ctx`` of type
:class:`ClaimContext`, for plots and shared models) and returns one
:class:`ClaimRow` or an iterable of them. The runner imports every module in
:data:`CLAIM_MODULES`; a module that does not exist yet, fails to import or
whose claim raises becomes a "not available" row with the reason, never a crash.
"""

from __future__ import annotations

import importlib
import inspect
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

from ..extras import available, note_missing
from ..io import atomic_path

#: Modules whose import registers claims, in report order.
CLAIM_MODULES: tuple[str, ...] = (
    "squeezelab.analysis.paper_claims",
    "squeezelab.analysis.sweep_claims",
    "squeezelab.compress.claims",
    "squeezelab.hwsim.claims",
)


@dataclass
class ClaimRow:
    """One measured claim.

    Args:
        claim: the claim in words, e.g. "SqueezeNet has 50x fewer parameters than AlexNet".
        paper: the paper's value as the paper states it, e.g. "50x" or "4.8MB".
        measured: what we measured, formatted, e.g. "50.9x".
        holds: whether the measurement supports the claim (``None``: not measurable here).
        note: how it was measured, the tolerance used, or why it does not hold.
    """

    claim: str
    paper: str
    measured: str
    holds: Optional[bool]
    note: str = ""


@dataclass
class ClaimContext:
    """Shared state for claim functions: a figure folder, a ``squeezelab sweep`` output folder whose
    trained results the learning claims read, and a model-count cache."""

    figure_dir: Optional[Path] = None
    sweep_dir: Optional[Path] = None
    figures: list[str] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def draws(self) -> bool:
        """Whether claims draw their figures: a figure folder is given and matplotlib is installed (else one
        note, and the claims are measured without their figures)."""
        if self.figure_dir is None:
            return False
        if not available("matplotlib"):
            note_missing("matplotlib", "the claims' figures")
            return False
        return True

    def save_figure(self, fig: Any, name: str) -> Optional[str]:
        """Save a matplotlib figure next to the report; returns the Markdown link (None if no folder)."""
        if self.figure_dir is None:
            return None
        self.figure_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.figure_dir / name) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        self.figures.append(name)
        return f"![{name}]({name})"


ClaimFunc = Callable[..., Union[ClaimRow, Iterable[ClaimRow]]]


@dataclass(frozen=True)
class RegisteredClaim:
    section: str
    func: ClaimFunc
    module: str


_CLAIMS: list[RegisteredClaim] = []


def claim(section: str) -> Callable[[ClaimFunc], ClaimFunc]:
    """Register a function returning one or more :class:`ClaimRow` under a report section.

    Registering the same function twice (a module re-imported) keeps one entry.
    """

    def wrap(func: ClaimFunc) -> ClaimFunc:
        key = (func.__module__, func.__qualname__)
        _CLAIMS[:] = [c for c in _CLAIMS if (c.module, c.func.__qualname__) != key]
        _CLAIMS.append(RegisteredClaim(section, func, func.__module__))
        return func

    return wrap


def registered_claims() -> list[RegisteredClaim]:
    """Claims registered so far, in registration order."""
    return list(_CLAIMS)


@dataclass
class ClaimResult:
    """A report section's rows, or why the section is not available."""

    section: str
    rows: list[ClaimRow]
    seconds: float = 0.0


def _call(func: ClaimFunc, ctx: ClaimContext) -> list[ClaimRow]:
    params = inspect.signature(func).parameters
    out = func(ctx=ctx) if "ctx" in params else func()
    rows = [out] if isinstance(out, ClaimRow) else list(out)
    for row in rows:
        if not isinstance(row, ClaimRow):
            raise TypeError(f"{func.__qualname__} returned {type(row).__name__}, expected ClaimRow")
    return rows


def _unavailable(what: str, reason: str) -> ClaimRow:
    return ClaimRow(what, paper="-", measured="not available", holds=None, note=reason)


def run_claims(
    modules: Optional[Iterable[str]] = None, figure_dir: Optional[Path] = None, sweep_dir: Optional[Path] = None
) -> tuple[list[ClaimResult], ClaimContext]:
    """Import ``modules`` (default :data:`CLAIM_MODULES`) and run their claims, grouped by section.

    Sections follow module order; only claims defined in a listed module itself are run.
    """
    ctx = ClaimContext(figure_dir=figure_dir, sweep_dir=sweep_dir)
    results: dict[str, ClaimResult] = {}
    for name in CLAIM_MODULES if modules is None else modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
                reason = f"module {name} does not exist yet"
            else:
                reason = f"module {name} failed to import: {exc}"
            results[name] = ClaimResult(name, [_unavailable(f"claims of {name}", reason)])
            continue
        except Exception as exc:  # a broken contributor module must not stop the report
            results[name] = ClaimResult(name, [_unavailable(f"claims of {name}", f"import failed: {exc!r}")])
            continue
        for entry in registered_claims():
            if entry.module != name:
                continue
            result = results.setdefault(entry.section, ClaimResult(entry.section, []))
            start = time.perf_counter()
            try:
                result.rows.extend(_call(entry.func, ctx))
            except Exception as exc:
                last = traceback.extract_tb(exc.__traceback__)[-1]
                result.rows.append(
                    _unavailable(entry.func.__name__, f"raised {exc!r} at {Path(last.filename).name}:{last.lineno}")
                )
            result.seconds += time.perf_counter() - start
    return list(results.values()), ctx


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _verdict(holds: Optional[bool]) -> str:
    return {True: "holds", False: "does not hold", None: "n/a"}[holds]


def render_markdown(results: list[ClaimResult], figures: Iterable[str] = ()) -> str:
    """The claims report as Markdown: one table per section, then the figures."""
    lines = ["# The papers' claims, measured", ""]
    counts = {True: 0, False: 0, None: 0}
    for result in results:
        for row in result.rows:
            counts[row.holds] += 1
    lines.append(
        f"{counts[True]} hold, {counts[False]} do not hold, {counts[None]} not available. "
        "Every value is computed when this report is generated."
    )
    for result in results:
        lines += ["", f"## {result.section}", "", "| claim | paper | measured | verdict | note |", "|---|---|---|---|---|"]
        for row in result.rows:
            lines.append(
                f"| {_cell(row.claim)} | {_cell(row.paper)} | {_cell(row.measured)} | "
                f"{_verdict(row.holds)} | {_cell(row.note)} |"
            )
    figures = list(figures)
    if figures:
        lines += ["", "## Figures", ""] + [f"![{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"

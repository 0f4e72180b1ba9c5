"""The SqueezeNet paper's learning findings (section 5 Figure 3, section 6 Table 3) as claims.

The static claims are computed when the report is made; these come from training,
so they are read from the results of ``squeezelab sweep`` (``ClaimContext.sweep_dir``,
given by ``squeezelab claims --sweep DIR`` or ``squeezelab demo --sweep DIR``). Each
finding becomes one row with the mean difference, its Welch interval and the sweep's
verdict; "inconclusive" is not a verdict either way, so it reports as not available.
"""

from __future__ import annotations

from .claims import ClaimContext, ClaimRow, claim
from .design_space import FINDINGS, plot_figure3, read_report

#: The sweep's verdict -> ClaimRow.holds.
_HOLDS = {"holds": True, "does not hold": False, "inconclusive": None}
#: Finding key -> the paper's value, for results written by any version of the sweep.
_PAPER = {f.key: f.paper for f in FINDINGS}
#: The figure the report links when the sweep ran the Figure 3 experiments.
FIGURE_NAME = "design_space_figure3.png"


def _measured(finding: dict) -> str:
    if finding["difference"] is None:
        return f"not run (n={finding['n_a']}/{finding['n_b']})"
    low_high = "n<2" if finding["interval"] is None else \
        f"[{finding['interval'][0]:+.2f}, {finding['interval'][1]:+.2f}]"
    return f"{finding['difference']:+.2f} top-1 {low_high} (n={finding['n_a']}/{finding['n_b']})"


@claim("SqueezeNet paper: design space, trained (squeezelab sweep)")
def design_space_findings(*, ctx: ClaimContext) -> list[ClaimRow]:
    """One row per finding of :data:`squeezelab.analysis.design_space.FINDINGS` the sweep tested."""
    if ctx.sweep_dir is None:
        return [ClaimRow(f.statement, paper=f.paper, measured="not measured", holds=None,
                         note="needs training: `squeezelab sweep -o OUT` then `squeezelab claims --sweep OUT` "
                              "(docs/design-space.md)") for f in FINDINGS]
    report = read_report(ctx.sweep_dir)
    budget, conf = report["budget"], f"{report['confidence']:.0%}"
    scale = f"{budget['name']} budget ({budget['description']}) on {report['data']}"
    if any(name in report["experiments"] for name in ("sr", "pct3x3")) and ctx.draws:
        ctx.figure_dir.mkdir(parents=True, exist_ok=True)
        if plot_figure3(report, ctx.figure_dir / FIGURE_NAME) is not None:
            ctx.figures.append(FIGURE_NAME)
    return [ClaimRow(f["statement"], paper=_PAPER.get(f["key"], "-"), measured=_measured(f),
                     holds=_HOLDS[f["verdict"]], note=_note(f, conf, report["tolerance"], scale))
            for f in report["findings"]]


def _note(finding: dict, conf: str, tolerance: float, scale: str) -> str:
    if finding["difference"] is None:
        return f"not trained yet: {finding['compares']} needs both points of the {finding['experiment']} experiment " \
               f"(`squeezelab sweep --experiments {finding['experiment']}`); {scale}"
    return f"{finding['verdict']} at this scale: {finding['compares']}, Welch {conf} interval, tolerance " \
           f"{tolerance:g} points; {scale}"

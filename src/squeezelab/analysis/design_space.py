"""SqueezeNet's design space (arXiv 1602.07360, section 5 Figure 3 and section 6 Table 3): grid, statistics, verdicts.

The grid: the SR sweep and the pct3x3 sweep of Figure 3 and the bypass variants of
Table 3, each a list of :class:`DesignPoint` (section 5.1 metaparameters). Points
shared by two experiments are one point (the SR sweep's SR=0.5 is the pct3x3
sweep's pct3x3=0.5; the SR sweep's SR=0.125 is Table 3's vanilla network).

Statistics: a point's accuracy over seeds is a mean with a Student-t confidence
interval; a finding compares two points with Welch's t interval on the difference
of their means. Each finding is a "rise" (the paper's accuracy goes up) or a
"plateau" (the paper's accuracy stops going up) and gets a verdict from that
interval and a tolerance ``tol`` in top-1 points (docs/design-space.md):

* rise: holds if the interval's low end > 0; does not hold if its high end < tol
  (a rise of tol or more is ruled out); else inconclusive.
* plateau: holds if the high end < tol (no gain of tol or more); does not hold if the
  low end > 0 (a real gain of unknown size); else inconclusive.

Student-t quantiles come from the regularized incomplete beta function (no SciPy needed).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Sequence

from ..errors import SqueezelabError
from ..io import atomic_path, atomic_write_text
from ..models.squeezenet import DEFAULT_BASE_E, DEFAULT_FREQ, DEFAULT_INCR_E, DEFAULT_PCT3X3, DEFAULT_SR, Bypass
from ..plotting import new_figure
from ..tables import format_table

Verdict = Literal["holds", "does not hold", "inconclusive"]
Interval = tuple[float, float]

#: The squeeze ratio of every point of the pct3x3 sweep (section 5.3, Figure 3(b): "SR = 0.5").
PCT_SWEEP_SR = 0.5
#: Default tolerance of the verdicts, in top-1 points.
DEFAULT_TOLERANCE = 1.0
#: Default confidence level of every interval.
DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class DesignPoint:
    """One SqueezeNet v1.0 variant in the section 5.1 metaparameters (defaults: Table 1's network)."""

    sr: float = DEFAULT_SR
    pct3x3: float = DEFAULT_PCT3X3
    bypass: Bypass = "none"
    base_e: int = DEFAULT_BASE_E
    incr_e: int = DEFAULT_INCR_E
    freq: int = DEFAULT_FREQ

    @property
    def label(self) -> str:
        """Short name, e.g. ``sr=0.125 pct3x3=0.5 bypass=none``."""
        return f"sr={self.sr:g} pct3x3={self.pct3x3:g} bypass={self.bypass}"

    def model_kwargs(self) -> dict[str, Any]:
        """``create_model('squeezenet1_0', **kwargs)`` arguments."""
        return asdict(self)


#: Experiment -> (x-axis name, [(x value, point)]), in plot order.
EXPERIMENTS: dict[str, tuple[str, list[tuple[Any, DesignPoint]]]] = {
    "sr": ("SR", [(sr, DesignPoint(sr=sr)) for sr in (0.125, 0.25, 0.5, 0.75, 1.0)]),
    "pct3x3": ("pct3x3", [(p, DesignPoint(sr=PCT_SWEEP_SR, pct3x3=p)) for p in (0.01, 0.125, 0.25, 0.5, 0.75, 0.99)]),
    "bypass": ("bypass", [(b, DesignPoint(bypass=b)) for b in ("none", "simple", "complex")]),
}

#: Table 3 as the paper prints it: bypass -> (top-1 %, top-5 %, model size).
PAPER_TABLE3 = {"none": (57.5, 80.3, "4.8MB"), "simple": (60.4, 82.5, "4.8MB"), "complex": (58.8, 82.0, "7.7MB")}


@dataclass(frozen=True)
class Finding:
    """A paper finding tested as ``accuracy(a) - accuracy(b)``: a rise (> 0) or a plateau (< tol)."""

    key: str
    experiment: str
    statement: str
    kind: Literal["rise", "plateau"]
    a: DesignPoint
    b: DesignPoint
    paper: str


def _table3_gain(a: str, b: str) -> str:
    """The paper's Table 3 top-1 difference ``a - b``, e.g. ``+2.9 top-1 (ImageNet)``."""
    return f"{PAPER_TABLE3[a][0] - PAPER_TABLE3[b][0]:+.1f} top-1 (ImageNet)"


FINDINGS: tuple[Finding, ...] = (
    Finding("sr_rise", "sr", "Figure 3(a): raising SR from 0.125 to 0.75 raises accuracy (ImageNet top-5 80.3% at "
            "4.8MB -> 86.0% at 19MB)", "rise", DesignPoint(sr=0.75), DesignPoint(sr=0.125),
            paper="+5.7 top-5 (ImageNet)"),
    Finding("sr_plateau", "sr", "Figure 3(a): accuracy plateaus at SR=0.75; SR=1.0 grows the model without improving "
            "accuracy", "plateau", DesignPoint(sr=1.0), DesignPoint(sr=0.75), paper="no gain (86.0% top-5)"),
    Finding("pct3x3_rise", "pct3x3", "Figure 3(b), SR=0.5: 50% 3x3 expand filters are more accurate than 1%",
            "rise", DesignPoint(sr=PCT_SWEEP_SR, pct3x3=0.5), DesignPoint(sr=PCT_SWEEP_SR, pct3x3=0.01),
            paper="a rise (to 85.6% top-5)"),
    Finding("pct3x3_plateau", "pct3x3", "Figure 3(b), SR=0.5: accuracy plateaus at 50% 3x3 filters (top-5 85.6%); "
            "99% grows the model without improving accuracy", "plateau",
            DesignPoint(sr=PCT_SWEEP_SR, pct3x3=0.99), DesignPoint(sr=PCT_SWEEP_SR, pct3x3=0.5),
            paper="no gain (85.6% top-5)"),
    Finding("simple_bypass", "bypass", "Table 3: simple bypass beats vanilla SqueezeNet (top-1 60.4% vs 57.5%, "
            "+2.9)", "rise", DesignPoint(bypass="simple"), DesignPoint(), paper=_table3_gain("simple", "none")),
    Finding("complex_bypass", "bypass", "Table 3: complex bypass beats vanilla SqueezeNet (58.8% vs 57.5%, +1.3)",
            "rise", DesignPoint(bypass="complex"), DesignPoint(), paper=_table3_gain("complex", "none")),
    Finding("simple_vs_complex", "bypass", "Table 3: simple bypass beats complex bypass (60.4% vs 58.8%, +1.6)",
            "rise", DesignPoint(bypass="simple"), DesignPoint(bypass="complex"),
            paper=_table3_gain("simple", "complex")),
)


def difference_label(a: DesignPoint, b: DesignPoint) -> str:
    """``a - b`` naming only the metaparameters that differ, e.g. ``sr=0.75 - sr=0.125``."""
    ka, kb = a.model_kwargs(), b.model_kwargs()
    names = [k for k in ka if ka[k] != kb[k]]
    return " - ".join(" ".join(f"{k}={v[k]}" if isinstance(v[k], str) else f"{k}={v[k]:g}" for k in names)
                      for v in (ka, kb))


def grid(experiments: Sequence[str]) -> list[DesignPoint]:
    """The distinct points of ``experiments``, in first-seen order (shared points once)."""
    unknown = [e for e in experiments if e not in EXPERIMENTS]
    if unknown:
        raise SqueezelabError(f"unknown experiment(s) {', '.join(unknown)}; choose from {', '.join(EXPERIMENTS)}")
    points: list[DesignPoint] = []
    for name in experiments:
        points.extend(p for _, p in EXPERIMENTS[name][1] if p not in points)
    return points


# --- Student t -------------------------------------------------------------------------------------------------


def _beta_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz, Numerical Recipes 6.4)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for aa in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                   -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` (real, > 0) degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (bisection on :func:`t_cdf`, to 1e-12)."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"need 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, high * 2.0
    while high - low > 1e-12 * max(1.0, high):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if t_cdf(mid, df) < p else (low, mid)
    return 0.5 * (low + high)


def mean_interval(values: Sequence[float], confidence: float = DEFAULT_CONFIDENCE) -> Optional[Interval]:
    """Student-t interval of the mean: mean -/+ t(1-alpha/2, n-1) s / sqrt(n); ``None`` below two values."""
    n = len(values)
    if n < 2:
        return None
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


def welch_interval(a: Sequence[float], b: Sequence[float], confidence: float = DEFAULT_CONFIDENCE
                   ) -> Optional[Interval]:
    """Welch's t interval of mean(a) - mean(b) (Welch-Satterthwaite df); ``None`` if either has < 2 values."""
    if len(a) < 2 or len(b) < 2:
        return None
    diff = statistics.fmean(a) - statistics.fmean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0.0:
        return diff, diff
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = t_quantile(0.5 + confidence / 2.0, df) * se
    return diff - half, diff + half


def verdict(kind: Literal["rise", "plateau"], interval: Optional[Interval], tol: float = DEFAULT_TOLERANCE) -> Verdict:
    """The verdict of a finding from the interval of its difference (module docstring)."""
    if interval is None:
        return "inconclusive"
    low, high = interval
    if kind == "rise":
        return "holds" if low > 0 else "does not hold" if high < tol else "inconclusive"
    return "holds" if high < tol else "does not hold" if low > 0 else "inconclusive"


# --- report ------------------------------------------------------------------------------------------------------


def summarize(records: Sequence[Mapping[str, Any]], confidence: float = DEFAULT_CONFIDENCE) -> dict[str, Any]:
    """One point's seeds (cached records of the same config) -> n, mean, sd, interval, size, train time."""
    top1 = [float(r["top1"]) for r in records]
    first = records[0]
    return {
        "n": len(top1), "seeds": sorted(int(r["seed"]) for r in records), "top1": top1,
        "mean": statistics.fmean(top1), "sd": statistics.stdev(top1) if len(top1) > 1 else None,
        "ci": mean_interval(top1, confidence), "params": first["params"], "size_mb": first["size_mb"],
        "imagenet_size_mb": first["imagenet_size_mb"],
        "train_seconds": statistics.fmean(float(r["train_seconds"]) for r in records),
    }


def _fmt_interval(interval: Optional[Sequence[float]]) -> str:
    return "n<2" if interval is None else f"[{interval[0]:+.2f}, {interval[1]:+.2f}]"


def _fmt_mean(s: Optional[Mapping[str, Any]], seeds: int) -> str:
    if s is None:
        return "not run"
    ci = "" if s["ci"] is None else f" [{s['ci'][0]:.2f}, {s['ci'][1]:.2f}]"
    partial = f" (partial: {s['n']}/{seeds} seeds)" if s["n"] < seeds else ""
    return f"{s['mean']:.2f}{ci}{partial}"


def build_report(summaries: Mapping[DesignPoint, Mapping[str, Any]], records: Mapping[DesignPoint, Sequence[
        Mapping[str, Any]]], experiments: Sequence[str], seeds: int, tol: float = DEFAULT_TOLERANCE,
        confidence: float = DEFAULT_CONFIDENCE) -> dict[str, Any]:
    """The results document: per experiment its points' summaries, and every finding of those experiments judged."""
    findings = []
    for f in FINDINGS:
        if f.experiment not in experiments:
            continue
        a, b = ([float(r["top1"]) for r in records.get(p, ())] for p in (f.a, f.b))
        interval = welch_interval(a, b, confidence)
        findings.append({
            "key": f.key, "experiment": f.experiment, "statement": f.statement, "kind": f.kind,
            "a": f.a.label, "b": f.b.label, "compares": difference_label(f.a, f.b), "n_a": len(a), "n_b": len(b),
            "difference": statistics.fmean(a) - statistics.fmean(b) if a and b else None,
            "interval": interval, "verdict": verdict(f.kind, interval, tol)})
    return {
        "paper": "Iandola et al., SqueezeNet, arXiv 1602.07360: section 5 Figure 3, section 6 Table 3",
        "metric": "top-1 % on the test set after the last epoch", "confidence": confidence, "tolerance": tol,
        "seeds_per_point": seeds,
        "experiments": {name: [{"x": x, "point": p.label, "config": p.model_kwargs(), **(summaries.get(p) or {"n": 0})}
                               for x, p in EXPERIMENTS[name][1]] for name in experiments},
        "findings": findings,
    }


def plot_figure3(report: Mapping[str, Any], path: Path) -> Optional[Path]:
    """Figure 3's two panels: top-1 vs model size for the SR and pct3x3 sweeps, with the intervals as error bars."""
    panels = [name for name in ("sr", "pct3x3") if name in report["experiments"]]
    if not panels:
        return None
    fig = new_figure(figsize=(6 * len(panels), 4.5))
    for i, name in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        rows = [r for r in report["experiments"][name] if r["n"]]
        xs = [r["size_mb"] for r in rows]
        ys = [r["mean"] for r in rows]
        err = [[r["mean"] - r["ci"][0] if r["ci"] else 0.0 for r in rows],
               [r["ci"][1] - r["mean"] if r["ci"] else 0.0 for r in rows]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=4)
        axis = EXPERIMENTS[name][0]
        for r, x, y in zip(rows, xs, ys):
            note = f"{axis}={r['x']:g}" + ("" if r["n"] >= report["seeds_per_point"] else f" (n={r['n']})")
            ax.annotate(note, (x, y), textcoords="offset points", xytext=(4, -12), fontsize=8)
        title = "(a) squeeze ratio (SR)" if name == "sr" else f"(b) pct3x3 (SR={PCT_SWEEP_SR:g})"
        ax.set(title=title, xlabel="model size (MB, fp32)", ylabel="top-1 accuracy (%)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"Figure 3 at this scale: mean top-1 and {report['confidence']:.0%} interval over seeds")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return path


def _markdown(report: Mapping[str, Any], title: str, plot: Optional[Path]) -> str:
    seeds, conf = report["seeds_per_point"], f"{report['confidence']:.0%}"
    lines = [f"# {title}", "", f"Metric: {report['metric']}; mean over seeds with the {conf} Student-t interval; "
             f"verdicts from Welch's {conf} interval on the difference, tolerance {report['tolerance']:g} points "
             f"(docs/design-space.md).", ""]
    headers = ["point", "params", "size (MB)", "ImageNet size (MB)", f"top-1 mean [{conf} CI]", "n", "train s"]
    for name, rows in report["experiments"].items():
        axis = EXPERIMENTS[name][0]
        lines += [f"## {'Table 3: bypass' if name == 'bypass' else f'Figure 3: {axis} sweep'}", ""]
        body = [[f"{axis}={r['x']}" if isinstance(r["x"], str) else f"{axis}={r['x']:g}",
                 r.get("params", "-"), round(r["size_mb"], 2) if r["n"] else "-",
                 round(r["imagenet_size_mb"], 2) if r["n"] else "-", _fmt_mean(r if r["n"] else None, seeds),
                 r["n"], round(r["train_seconds"], 1) if r["n"] else "-"] for r in rows]
        if name == "bypass":
            headers_b = headers + ["paper top-1", "paper size"]
            body = [row + [PAPER_TABLE3[r["x"]][0], PAPER_TABLE3[r["x"]][2]] for row, r in zip(body, rows)]
            lines += [format_table(headers_b, body, markdown=True), ""]
        else:
            lines += [format_table(headers, body, markdown=True), ""]
    if plot is not None:
        lines += [f"![Figure 3 at this scale]({plot.name})", ""]
    lines += ["## Findings", ""]
    body = [[f["statement"], f["compares"], "-" if f["difference"] is None else round(f["difference"], 2),
             _fmt_interval(f["interval"]), f"{f['n_a']}/{f['n_b']}", f["kind"], f["verdict"]]
            for f in report["findings"]]
    lines += [format_table(["finding", "difference of", "mean diff", f"{conf} Welch CI", "n", "test", "verdict"],
                           body, markdown=True), ""]
    return "\n".join(lines)


def write_report(report: Mapping[str, Any], output: Path, title: str, plots: bool = True) -> list[Path]:
    """``results.json``, ``report.md`` and (with matplotlib) ``figure3.png`` in ``output``, each written atomically."""
    written = [output / "results.json"]
    atomic_write_text(written[0], json.dumps(report, indent=2) + "\n")
    plot = plot_figure3(report, output / "figure3.png") if plots else None
    if plot is not None:
        written.append(plot)
    atomic_write_text(output / "report.md", _markdown(report, title, plot))
    return written + [output / "report.md"]


def read_report(folder: Path) -> dict[str, Any]:
    """The ``results.json`` that :func:`write_report` left in ``folder`` (one-line error if it is not there)."""
    path = Path(folder) / "results.json"
    hint = "give the -o folder of `squeezelab sweep` (docs/design-space.md)"
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise SqueezelabError(f"no sweep results in {folder}: {path.name} is missing; {hint}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SqueezelabError(f"cannot read {path}: {exc}; {hint}") from None
    if not isinstance(report, dict) or not {"findings", "experiments", "budget"} <= set(report):
        raise SqueezelabError(f"{path} is not a `squeezelab sweep` results file; {hint}")
    return report

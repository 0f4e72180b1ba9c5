"""``squeezelab demo``: the whole pipeline on data that ships with the dependencies.

The demo writes a report folder (``report.md`` plus PNG plots). Each pipeline
stage contributes one function ``stage(ctx)`` listed in :data:`STAGES`; a stage
reads what earlier stages left in ``ctx.artifacts`` (for example the trained
checkpoint) and appends a section to the report. Stages run in order and the
report is rewritten after each one, so an interrupted demo still leaves a
readable report. A stage whose optional dependencies are missing is skipped
before it starts, with one note in the log and its section in the report
saying what to install; the zoo stage only leaves out its plot.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from .analysis import count_macs, count_params
from .extras import EXTRAS, MissingExtra, available, install_command, missing, note_missing
from .io import atomic_path, atomic_write_text
from .models import create_model, get_model_entry, list_models
from .plotting import new_figure
from .tables import format_table


@dataclass
class Report:
    """A Markdown report with PNG figures, written atomically to ``root/report.md``."""

    root: Path
    title: str = "squeezelab demo report"
    sections: list[str] = field(default_factory=list)

    def add(self, heading: str, body: str) -> None:
        self.sections.append(f"## {heading}\n\n{body.strip()}\n")
        self.write()

    def save_figure(self, fig: Any, name: str) -> str:
        """Save a matplotlib figure as ``root/name`` and return the Markdown image link."""
        with atomic_path(self.root / name) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        return f"![{name}]({name})"

    def write(self) -> Path:
        path = self.root / "report.md"
        atomic_write_text(path, f"# {self.title}\n\n" + "\n".join(self.sections))
        return path


@dataclass
class DemoContext:
    """Shared state of one demo run."""

    report: Report
    quick: bool = False
    artifacts: dict[str, Any] = field(default_factory=dict)
    #: a folder laid out like shared/data (the CIFAR-10 zips), for the stages that use it when it is there
    data_dir: Optional[Path] = None
    #: a ``squeezelab sweep`` output folder whose report the design-space stage shows
    sweep_dir: Optional[Path] = None

    @property
    def root(self) -> Path:
        return self.report.root


def zoo_stage(ctx: DemoContext) -> None:
    """Build every zoo model and tabulate parameters and MACs at its design input size."""
    rows, points = [], []
    for name in list_models():
        entry = get_model_entry(name)
        model = create_model(name)
        params, macs = count_params(model), count_macs(model, entry.input_size)
        rows.append([name, params, f"{macs / 1e6:,.1f}", entry.input_size, model.min_input_size, entry.description])
        points.append((name, params, macs))
    link = _zoo_figure(ctx, points) if available("matplotlib") else \
        f"(No plot: matplotlib is not installed; {install_command('matplotlib')}.)"
    if not available("matplotlib"):
        note_missing("matplotlib", "the zoo plot")
    table = format_table(["model", "params", "MMACs", "input", "min input", "description"], rows, markdown=True)
    ctx.report.add("Model zoo", f"{len(rows)} models, built and counted.\n\n{table}\n\n{link}")


def _zoo_figure(ctx: DemoContext, points: list[tuple[str, int, int]]) -> str:
    """Parameters against MACs of every zoo model, as zoo.png; returns the Markdown link."""
    fig = new_figure(figsize=(8, 5))
    ax = fig.subplots()
    for name, params, macs in points:
        ax.scatter(params / 1e6, macs / 1e6, s=30)
        ax.annotate(name, (params / 1e6, macs / 1e6), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("MACs (millions, at design input size)")
    ax.set_title("The squeezelab zoo")
    ax.grid(alpha=0.3)
    return ctx.report.save_figure(fig, "zoo.png")


#: (name, "module:function", optional modules it needs) in pipeline order; later issues add their stages here.
STAGES: list[tuple[str, str, tuple[str, ...]]] = [
    ("zoo", "squeezelab.demo:zoo_stage", ()),
    ("pretrained", "squeezelab.inference.demo:pretrained_stage", ("skimage",)),
    ("cifar10", "squeezelab.inference.demo:cifar10_stage", ("skimage", "matplotlib")),
    ("train", "squeezelab.train.demo:train_stage", ("sklearn",)),
    ("hwsim", "squeezelab.hwsim.demo:stage", ("matplotlib",)),
    ("analysis", "squeezelab.analysis.demo:stage", ("matplotlib",)),
    ("design_space", "squeezelab.analysis.demo:design_space_stage", ()),
    ("compress", "squeezelab.compress.demo:stage", ()),
    ("export", "squeezelab.deploy.demo:stage", ("onnx", "onnxruntime")),
]


def _load_stage(target: str) -> Callable[[DemoContext], None]:
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def _skip(ctx: DemoContext, name: str, modules: list[str], log: Callable[[str], None]) -> None:
    """Leave stage ``name`` out: one log note and a report section naming what to install."""
    installs = ", ".join(sorted({install_command(m) for m in modules}))
    log(f"[demo] {name} skipped: needs {', '.join(modules)}, not installed ({installs})")
    ctx.report.add(f"{name} (skipped)", f"This section needs {', '.join(modules)}, which is not installed: "
                   f"`{installs}` and rerun the demo.")


def _run_stage(ctx: DemoContext, name: str, target: str, needs: tuple[str, ...], log: Callable[[str], None]) -> None:
    """Run one stage, or skip it when an optional module it needs (declared, or met on the way) is missing."""
    absent = missing(*needs)
    if absent:
        _skip(ctx, name, absent, log)
        return
    start = time.perf_counter()
    log(f"[demo] {name} ...")
    try:
        _load_stage(target)(ctx)
    except MissingExtra as exc:  # an optional module the table does not list: skipped all the same
        _skip(ctx, name, [exc.module], log)
        return
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in EXTRAS:
            raise
        _skip(ctx, name, [(exc.name or "").split(".")[0]], log)
        return
    log(f"[demo] {name} done in {time.perf_counter() - start:.1f}s")


def run_demo(output_dir: str | Path = "demo_report", quick: bool = False, log: Callable[[str], None] = print,
             data_dir: Optional[str | Path] = None, sweep_dir: Optional[str | Path] = None) -> Path:
    """Run every stage, writing the report into ``output_dir``; returns the report path."""
    ctx = DemoContext(Report(Path(output_dir)), quick=quick, data_dir=Path(data_dir) if data_dir else None,
                      sweep_dir=Path(sweep_dir) if sweep_dir else None)
    ctx.root.mkdir(parents=True, exist_ok=True)
    for name, target, needs in STAGES:
        _run_stage(ctx, name, target, needs, log)
    path = ctx.report.write()
    log(f"[demo] report: {path}")
    return path

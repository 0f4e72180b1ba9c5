"""``squeezelab demo``: the whole pipeline on data that ships with the dependencies.

The demo writes a report folder (``report.md`` plus PNG plots). Each pipeline
stage is one function ``stage(ctx)`` in a module of this package, listed in :data:`STAGES`; a stage
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
from pathlib import Path
from typing import Callable, Optional

from ..extras import EXTRAS, MissingExtra, install_command, missing
from .report import DemoContext, Report

__all__ = ["STAGES", "DemoContext", "Report", "run_demo"]


#: (name, "module:function", optional modules it needs) in pipeline order. A stage module is imported only
#: when the modules it needs are installed (the demo package sits above the stages, below the CLI).
STAGES: list[tuple[str, str, tuple[str, ...]]] = [
    ("zoo", "squeezelab.demo.zoo:zoo_stage", ()),
    ("pretrained", "squeezelab.demo.inference:pretrained_stage", ("skimage",)),
    ("cifar10", "squeezelab.demo.inference:cifar10_stage", ("skimage", "matplotlib")),
    ("train", "squeezelab.demo.train:train_stage", ("sklearn",)),
    ("hwsim", "squeezelab.demo.hwsim:stage", ("matplotlib",)),
    ("analysis", "squeezelab.demo.analysis:stage", ("matplotlib",)),
    ("design_space", "squeezelab.demo.analysis:design_space_stage", ()),
    ("compress", "squeezelab.demo.compress:stage", ()),
    ("export", "squeezelab.demo.deploy:stage", ("onnx", "onnxruntime")),
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

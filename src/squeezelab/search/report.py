"""What a search writes: ``pareto.json`` / ``pareto.csv`` (one row per Pareto-optimal design, with the
``squeezelab simulate`` command that reproduces it), the Pareto plot with the paper's designs marked, and
the hypervolume history."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..io import atomic_path, atomic_write_text
from ..plotting import colormap, new_figure
from .optimize import History
from .problem import Evaluation, Problem
from .space import REFERENCES, Hardware, HardwareSpace

#: The designs marked on the Pareto plot (issue 31: SqNxt-23 v1 and v5, and the 1.0 / 1.5 / 2.0 widths).
MARKED = ("1.0-SqNxt-23", "1.0-SqNxt-23v5", "1.5-SqNxt-23", "1.5-SqNxt-23v5", "2.0-SqNxt-23", "2.0-SqNxt-23v5")


def simulate_command(evaluation: Evaluation, hardware_space: HardwareSpace, input_size: int) -> str:
    """The ``squeezelab simulate`` command line that prints this design's cycles and energy."""
    hw = evaluation.hardware
    parts = [f"squeezelab simulate '{evaluation.arch.spec}'", f"--input-size {input_size}",
             f"--config {hardware_space.base}", f"--array {hw.array_rows}x{hw.array_cols}",
             f"--dataflow {hw.dataflow}", f"--glb-kib {hw.glb_kib}"]
    if hw.dram_bw is not None:
        parts.append(f"--dram-bw {hw.dram_bw:g}")
    return " ".join(parts)


def design_row(problem: Problem, evaluation: Evaluation, label: str = "") -> dict[str, Any]:
    """One design as a pareto.json row."""
    config = problem.space.hardware.config(evaluation.hardware)
    row = evaluation.to_dict(config.to_dict())
    row["simulate"] = simulate_command(evaluation, problem.space.hardware, problem.input_size)
    row["feasible"] = problem.feasible(evaluation)
    return {"label": label, **row} if label else row


def reference_rows(problem: Problem, hardware: Optional[Hardware] = None) -> list[dict[str, Any]]:
    """The paper's designs on ``hardware`` (default: the base preset, the paper's accelerator)."""
    hw = hardware or problem.space.hardware.paper
    return [design_row(problem, problem.evaluate(REFERENCES[name], hw), name) for name in REFERENCES]


_CSV_COLUMNS = ("label", "model", "spec", "depths", "width", "stem_kernel", "projection_first", "separable_order",
                "groups", "squeeze_ratio", "array_rows", "array_cols", "glb_kib", "dataflow", "dram_bw", "area",
                "cycles", "energy", "edp", "utilization", "params", "macs", "dram_words", "energy_unit")


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """Flat rows: design keywords, accelerator, costs, then one ``proxy_NAME`` column per proxy and the command."""
    proxies = sorted({name for row in rows for name in row["proxies"]})
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*_CSV_COLUMNS, *(f"proxy_{p}" for p in proxies), "simulate"])
    for row in rows:
        flat = {"label": row.get("label", ""), **row, **row["model_kwargs"], **row["hardware"]}
        values = [json.dumps(v) if isinstance(v := flat.get(c, ""), list) else v for c in _CSV_COLUMNS]
        writer.writerow([*values, *(row["proxies"].get(p, "") for p in proxies), row["simulate"]])
    return buf.getvalue()


def write_pareto(out_dir: Path, summary: dict[str, Any], designs: list[dict[str, Any]],
                 references: list[dict[str, Any]]) -> list[Path]:
    """pareto.json (summary, designs, references) and pareto.csv (designs then references), atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "pareto.json", out_dir / "pareto.csv"]
    atomic_write_text(paths[0], json.dumps({**summary, "designs": designs, "references": references}, indent=1))
    atomic_write_text(paths[1], to_csv(designs + references))
    return paths


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def plot_pareto(path: Path, all_points: np.ndarray, designs: list[dict[str, Any]], references: list[dict[str, Any]],
                proxy: str, title: str) -> Path:
    """Cycles against energy: every feasible design evaluated (grey), the Pareto designs coloured by the proxy,
    and the paper's designs (:data:`MARKED`) on the base accelerator; beside it, the proxy against cycles."""
    fig = new_figure(figsize=(13, 5.5))
    left, right = fig.subplots(1, 2)
    if len(all_points):
        left.scatter(all_points[:, 0], all_points[:, 1], s=4, color="0.8", label="evaluated (feasible)")
    cycles = [d["cycles"] for d in designs]
    energy = [d["energy"] for d in designs]
    score = [d["proxies"][proxy] for d in designs]
    if designs:
        points = left.scatter(cycles, energy, c=score, cmap="viridis", s=18, label="Pareto designs")
        fig.colorbar(points, ax=left, label=f"proxy: {proxy}")
        right.scatter(cycles, score, c=score, cmap="viridis", s=18)
    marks = colormap("tab10")
    for i, ref in enumerate(r for r in references if r.get("label") in MARKED):
        style = dict(marker="*" if "v5" in ref["label"] else "D", s=120, color=marks(i), edgecolor="k", zorder=5)
        left.scatter(ref["cycles"], ref["energy"], label=ref["label"], **style)
        right.scatter(ref["cycles"], ref["proxies"][proxy], **style)
    for axis in (left, right):
        axis.set_xscale("log")
        axis.set_xlabel("cycles (227 px image)")
        axis.grid(True, alpha=0.3)
    left.set_yscale("log")
    unit = references[0]["energy_unit"] if references else ""
    left.set_ylabel(f"energy ({unit})")
    right.set_ylabel(f"proxy: {proxy} (higher is better)")
    left.legend(fontsize=7, loc="best")
    left.set_title(title, fontsize=9)
    right.set_title("accuracy proxy against cycles", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_history(path: Path, histories: dict[str, list[History]], exact: Optional[float], title: str) -> Path:
    """Hypervolume against trials, one line per run, grouped (coloured) by label; the exact front's as a line."""
    fig = new_figure(figsize=(7, 4.5))
    axis = fig.subplots()
    colors = colormap("tab10")
    for i, (label, runs) in enumerate(histories.items()):
        for j, history in enumerate(runs):
            values = history.hypervolume / exact if exact else history.hypervolume
            axis.plot(history.trials, values, color=colors(i), alpha=0.8, lw=1.2, label=label if j == 0 else None)
    if exact:
        axis.axhline(1.0, color="k", lw=1, label="exact front")
        axis.axhline(0.99, color="k", lw=0.8, ls="--", label="99%")
        axis.set_ylabel("hypervolume / exact front's")
    else:
        axis.set_ylabel("hypervolume (normalised objectives)")
    axis.set_xlabel("trials (evaluations)")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)

"""The demo's report folder and the state its stages share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..io import atomic_path, atomic_write_text


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

"""Run SCALE-Sim 3.0.0 on a folder written by ``squeezelab simulate ... --export-scalesim DIR``.

Copies the folder's ``topology.csv`` and ``scale.cfg`` and SCALE-Sim's
``COMPUTE_REPORT.csv`` into ``networks/<name>/`` next to this file. Run it with
the throwaway SCALE-Sim venv (see README.md)::

    /tmp/scalesim-venv/bin/python tests/data/hwsim/run_exported.py DIR NAME
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(export_dir: str, name: str) -> int:
    from scalesim.scale_sim import scalesim

    src = Path(export_dir)
    dest = HERE / "networks" / name
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        sim = scalesim(save_disk_space=True, verbose=False, config=str(src / "scale.cfg"),
                       topology=str(src / "topology.csv"), layout=str(src / "layout.csv"), input_type_gemm=False)
        sim.run_scale(top_path=tmp)
        (report,) = Path(tmp).glob("*/COMPUTE_REPORT.csv")
        shutil.copy(report, dest / "COMPUTE_REPORT.csv")
    shutil.copy(src / "topology.csv", dest / "topology.csv")
    shutil.copy(src / "scale.cfg", dest / "scale.cfg")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

"""Run many ``squeezelab`` command lines in one child process (one torch import) and collect their results.

Used where a test needs a process of its own: another environment (tests/test_extras_matrix.py) or
another user's permissions (tests/test_bad_inputs.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Optional, Sequence

#: Runs the command lines of argv[1] (JSON) in this process and writes their results to argv[2].
DRIVER = """
import contextlib, io, json, os, sys, traceback
from squeezelab.cli.main import main
results = []
for step in json.load(open(sys.argv[1])):
    argv, env = (step["argv"], step["env"]) if isinstance(step, dict) else (step, {})
    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    os.environ.update(env)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        except BaseException:
            traceback.print_exc()
            code = -1
    os.environ.clear()
    os.environ.update(saved)
    results.append({"code": code, "out": out.getvalue(), "err": err.getvalue()})
json.dump(results, open(sys.argv[2], "w"))
"""


def run_commands(python: Sequence[str], commands: list[Any], folder: Path, cwd: Path,
                 env: Optional[dict[str, str]] = None, timeout: float = 1200) -> list[dict[str, Any]]:
    """Each command line's ``{"code", "out", "err"}``, run by ``python`` (a command prefix) in ``cwd``.

    A command is an argv list, or ``{"argv": [...], "env": {...}}`` for variables set while it runs.
    ``folder`` holds the driver and its files."""
    (folder / "steps.json").write_text(json.dumps(commands))
    (folder / "driver.py").write_text(DRIVER)
    proc = subprocess.run([*python, str(folder / "driver.py"), str(folder / "steps.json"),
                           str(folder / "results.json")], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((folder / "results.json").read_text())

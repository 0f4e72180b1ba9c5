"""Every command's happy path in fresh virtual environments holding the core only, ``[train]`` alone and ``[all]``.

What it holds the commands to (docs/reliability.md, "Optional extras"): a missing optional extra is refused
before any work, in one line naming the extra (``quantize`` without ``[deploy]``), or skips its figure, section
or progress bar with one note while the work goes on (``train`` without matplotlib: no curves.png;
``demo``: sections skipped; ``bench``: no ONNX Runtime row; ``eval`` without tqdm). Never a traceback, never a
run that stops half-way.

How the environments are made, offline and in seconds rather than by installing torch again (GBs):

- ``python -m venv --without-pip ENV`` for each configuration.
- The core dependencies (torch, torchvision, numpy, pillow, safetensors, and what they require, found through
  this interpreter's ``importlib.metadata``) become visible in ENV through a ``.pth`` file naming a folder of
  symlinks to just their top-level packages and ``.dist-info`` folders. pip and ``importlib.metadata`` in ENV
  therefore see them as installed, and nothing else of this interpreter's site-packages is visible.
- squeezelab itself comes from this checkout's ``src`` (``PYTHONPATH``), as with the editable install.
- The extras under test are installed with this interpreter's pip (``pip --python ENV/bin/python install
  --no-index --find-links DIR ... --no-compile``) from the local wheel folders (``$SQUEEZELAB_WHEELS``, the
  find-links of pip's configuration, ``/opt/pypi*/files``, ``/opt/wheels``, ``~/.cache/pip/wheels``); only if
  they lack a wheel does pip fall back to its configured index. Where neither works the test is skipped with
  one line (and fails under ``CI=true``).
- Before the commands run, the test checks in ENV that every optional module of an extra not under test
  really does not import, and that those under test do.

The commands of one configuration run in one ENV process through ``squeezelab.cli.main.main`` (one torch
import), each with its exit status, stdout and stderr recorded, in a folder of small inputs made here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from PIL import Image

from _cli_driver import run_commands
from squeezelab.extras import EXTRAS

REPO_ROOT = Path(__file__).resolve().parents[1]
CORE_DISTRIBUTIONS = ("torch", "torchvision", "numpy", "pillow", "safetensors")
UPSTREAM = REPO_ROOT / "src" / "squeezelab" / "weights" / "upstream"
CIFAR = "--weights squeezenet1_1.cifar10"
def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(names: tuple[str, ...]) -> dict[str, metadata.Distribution]:
    """The installed distributions ``names`` and everything they require (extras' requirements left out)."""
    found: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        if _key(name) in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a requirement for another platform or Python
        found[_key(name)] = dist
        todo += [re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0] for req in dist.requires or () if "extra ==" not in req]
    return found


def _link_core(folder: Path) -> None:
    """Symlinks to the top-level files and folders (packages, .dist-info, .libs) of the core distributions."""
    folder.mkdir()
    for dist in _closure(CORE_DISTRIBUTIONS).values():
        tops = {f.parts[0] for f in dist.files or () if f.parts[0] not in ("..", "__pycache__")
                and not f.parts[0].endswith(".pth")}
        for top in tops:
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (folder / top).exists():
                (folder / top).symlink_to(source)


def _wheel_folders() -> list[str]:
    """Local folders of wheels pip may install from without a network."""
    config = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    configured = [path for line in config.splitlines() if "find-links" in line
                  for path in line.split("=", 1)[1].strip("'\" ").split()]
    candidates = [os.environ.get("SQUEEZELAB_WHEELS", ""), *configured, "/opt/pypi/files", "/opt/pypi-more/files",
                  "/opt/wheels", str(Path.home() / ".cache" / "pip" / "wheels")]
    return [c for c in dict.fromkeys(candidates) if c and Path(c).is_dir()]


def _install(python: Path, requirements: list[str]) -> None:
    """Install ``requirements`` into the environment of ``python``: local wheels first, pip's index second."""
    links = [arg for folder in _wheel_folders() for arg in ("--find-links", folder)]
    base = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-compile",
            "--disable-pip-version-check", *links]
    errors = []
    for extra in (["--no-index"], []):
        proc = subprocess.run([*base, *extra, *requirements], capture_output=True, text=True, timeout=900)
        if proc.returncode == 0:
            return
        errors.append((proc.stderr.strip().splitlines() or ["no output"])[-1])
    reason = f"cannot install {' '.join(requirements)} offline or from pip's index: {errors[-1]}"
    if os.environ.get("CI", "").strip().lower() in ("true", "1"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _requirements(extras: tuple[str, ...]) -> list[str]:
    """The requirements of ``extras`` as pyproject.toml lists them (``all`` expanded)."""
    table = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    found: list[str] = []
    for extra in extras:
        for req in table[extra]:
            nested = re.fullmatch(r"squeezelab\[(.+)\]", req)
            found += _requirements(tuple(nested.group(1).split(","))) if nested else [req]
    return list(dict.fromkeys(found))


def _environment(root: Path, extras: tuple[str, ...]) -> tuple[Path, dict[str, str]]:
    """A fresh virtual environment with the core visible and ``extras`` installed; its python and environ."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True, timeout=120)
    python = root / "venv" / "bin" / "python"
    site = next((root / "venv" / "lib").glob("python*/site-packages"))
    _link_core(root / "core")
    (site / "squeezelab_core.pth").write_text(f"{root / 'core'}\n")
    if extras:
        _install(python, _requirements(extras))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root), "PYTHONPATH": str(REPO_ROOT / "src"),
           "PYTHONNOUSERSITE": "1", "LANG": "C.UTF-8", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    return python, env


def _inputs(work: Path) -> None:
    """Two classes of six random 40 px images."""
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (work / "imgs" / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(work / "imgs" / label / f"{i}.png")


def _steps(has: set[str]) -> list[tuple[str, Optional[str], Optional[str]]]:
    """(command line, the missing module that refuses it up front or None, the note it prints or None)."""
    plots = None if "matplotlib" in has else "matplotlib"
    deploy = None if "onnxruntime" in has else "onnx"
    steps = [
        ("--version", None, None),
        ("list", None, None),
        ("info squeezenet1_1", None, None),
        (f"convert {UPSTREAM}/squeezenet_v1.1_caffe_openvino_fp16/squeezenet1.1.xml -o conv.safetensors", None, None),
        (f"predict squeezenet1_1 imgs/a/0.png {CIFAR}", None, None),
        (f"eval squeezenet1_1 {CIFAR} --data imgs --workers 0 --json eval.json", None, None),
        ("simulate squeezenet1_1 --json sim.json", None, None),
        ("simulate squeezenet1_1 --plot sim.png", plots, None),
        ("train squeezenet1_1 --data imgs --input-size 32 --epochs 1 --threads 1 -o run", None,
         plots and "curves.png skipped"),
        ("train squeezenet1_1 --input-size 8 --epochs 1 --train-limit 64 --val-limit 32 --threads 1 -o digits",
         None if "sklearn" in has else "sklearn", plots and "curves.png skipped"),
        ("sweep --experiments bypass --seeds 0 --max-points 1 --data imgs --threads 1 -o sweep", plots, None),
        ("sweep --experiments bypass --seeds 0 --max-points 1 --data imgs --threads 1 --no-plot -o sweep", None,
         plots and "curves.png skipped"),
        (f"compress squeezenet1_1 {CIFAR} -o c.sqz", None, None),
        (f"quantize squeezenet1_1 {CIFAR} --calibration imgs --max-images 8 -o q.onnx", deploy, None),
        (f"lowrank squeezenet1_1 {CIFAR} -o lowrank.safetensors", None, None),
        ("profile squeezenet1_1", None, None),
        ("profile squeezenet1_1 --plot profile.png", plots, None),
        ("compare squeezenet1_1 sqnxt23_w1", None, None),
        ("claims -o claims/claims.md", None, plots and "the claims' figures skipped"),
        ("export squeezenet1_1 --format torchscript -o m.pt", None, None),
        ("export squeezenet1_1 -o m.onnx", deploy, None),
        (f"bench squeezenet1_1 {CIFAR} --batch 1 --reps 3 --max-seconds 1 --threads 1", None,
         deploy and "the onnxruntime backend skipped"),
        ("demo --quick -o report", None, None),
    ]
    return steps


CONFIGURATIONS = {"core": (), "train": ("train",), "all": ("all",)}


@pytest.mark.slow  # core 2 min, [train] and [all] 6 min each on 2 shared cores (pip installs, demo, sweeps)
@pytest.mark.parametrize("name", list(CONFIGURATIONS))
def test_every_command_in_a_fresh_environment(name: str, tmp_path: Path) -> None:
    extras = CONFIGURATIONS[name]
    python, env = _environment(tmp_path, extras)
    wanted = {module for module, extra in EXTRAS.items() if extra in extras or "all" in extras}
    probe = ("import importlib.util, json; print(json.dumps({m: importlib.util.find_spec(m) is not None "
             f"for m in {sorted(EXTRAS)!r}}}))")
    found = json.loads(subprocess.run([str(python), "-c", probe], capture_output=True, text=True, env=env,
                                      check=True).stdout)
    assert {m for m, present in found.items() if present} == wanted, found  # the missing extras really are missing

    work = tmp_path / "work"
    _inputs(work)
    steps = _steps(wanted)
    results = run_commands([str(python)], [line.split() for line, _, _ in steps], tmp_path, work, env)
    for (line, refused_for, note), result in zip(steps, results):
        err, label = result["err"], f"[{name}] squeezelab {line}"
        assert "Traceback" not in err, f"{label}:\n{err}"
        if refused_for:
            lines = err.strip().splitlines()
            assert result["code"] == 2 and len(lines) == 1, f"{label}: exit {result['code']}\n{err}"
            assert f"needs {refused_for}" in lines[0] and "pip install 'squeezelab[" in lines[0], f"{label}: {err}"
            assert result["out"] == "", f"{label} worked before it refused:\n{result['out']}"
            continue
        assert result["code"] == 0, f"{label}: exit {result['code']}\n{err}"
        notes = [row for row in err.splitlines() if row.startswith("squeezelab: note:")]
        if note:
            assert any(note in row for row in notes), f"{label}: no note '{note}' in\n{err}"
        assert len(notes) == len(set(notes)), f"{label}: a note repeated\n{err}"
    report = (work / "report" / "report.md").read_text()
    assert ("(skipped)" in report) == (name != "all")
    assert (work / "run" / "curves.png").is_file() == ("matplotlib" in wanted)
    assert (work / "run" / "state.pt").is_file() and (work / "sweep" / "report.md").is_file()
    assert "needs matplotlib" not in (work / "claims" / "claims.md").read_text()

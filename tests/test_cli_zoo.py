"""The CLI front door: --help, list, info, and one-line errors for user mistakes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from squeezelab.cli import main
from squeezelab.models import list_models


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "squeezelab", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("list", "info", "demo"):
        assert command in result.stdout


def test_list_shows_every_model_with_params(capsys: pytest.CaptureFixture) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in list_models():
        assert name in out
    assert "1,248,424" in out and "717,280" in out


def test_list_pattern(capsys: pytest.CaptureFixture) -> None:
    assert main(["list", "sqnxt23v5*"]) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:]]
    assert rows == ["sqnxt23v5_w1", "sqnxt23v5_w1_5", "sqnxt23v5_w2"]


def test_info_accepts_paper_alias(capsys: pytest.CaptureFixture) -> None:
    assert main(["info", "1.0-SqNxt-23v5"]) == 0
    out = capsys.readouterr().out
    assert "sqnxt23v5_w1" in out and "930,016" in out and "224,916,480" in out and "arXiv 1803.10615" in out


@pytest.mark.parametrize(
    "args,message",
    [
        (["info", "squeezenet2"], "unknown model 'squeezenet2'; did you mean"),
        (["info", "squeezenet1_1", "--input-size", "8"], "smaller than this model's minimum 17x17"),
        (["list", "nothing-like-this"], "no model matches"),
    ],
)
def test_user_errors_are_one_line(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

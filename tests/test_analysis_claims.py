"""The claims registry and runner, the paper claims' measured values, and the profile/compare/claims CLI."""

from __future__ import annotations

import json
import sys
import time
import types

import pytest

from squeezelab.analysis import claims as claims_mod
from squeezelab.analysis.claims import ClaimRow, claim, render_markdown, run_claims
from squeezelab.cli.main import main


@pytest.fixture
def fake_module(monkeypatch):
    """A claims module registered under a throwaway name: one good claim, one that raises."""
    module = types.ModuleType("fake_claims_for_test")
    monkeypatch.setitem(sys.modules, module.__name__, module)

    def good():
        return [ClaimRow("two is even", "yes", str(2 % 2 == 0), holds=2 % 2 == 0), ClaimRow("x", "1", "2", False)]

    def broken():
        raise ValueError("boom")

    for func in (good, broken):
        func.__module__ = module.__name__
        claim("Fake section")(func)
    yield module.__name__
    claims_mod._CLAIMS[:] = [c for c in claims_mod._CLAIMS if c.module != module.__name__]


def test_runner_survives_missing_modules_and_broken_claims(fake_module):
    results, _ = run_claims(["squeezelab.no_such_area.claims", fake_module, "json.no_such_module"])
    by_section = {r.section: r.rows for r in results}
    missing = by_section["squeezelab.no_such_area.claims"][0]
    assert missing.holds is None and "does not exist yet" in missing.note
    assert "does not exist yet" in by_section["json.no_such_module"][0].note
    rows = by_section["Fake section"]
    assert [r.holds for r in rows] == [True, False, None]
    assert "boom" in rows[2].note
    text = render_markdown(results)
    assert "1 hold, 1 do not hold, 3 not available" in text
    assert "| two is even | yes | True | holds |" in text


def test_paper_claims_are_computed_and_fast():
    start = time.perf_counter()
    results, _ = run_claims(["squeezelab.analysis.paper_claims"])
    elapsed = time.perf_counter() - start
    rows = {r.claim: r for result in results for r in result.rows}
    assert elapsed < 60
    assert all(r.holds is not None for r in rows.values())
    grouped = rows["1.0-G-SqNxt-23 (grouped) has 112x fewer parameters than AlexNet"]
    assert grouped.measured == f"{61_100_840 / 543_072:.1f}x" and grouped.holds
    plain = rows["1.0-SqNxt-23 (no groups) has 112x fewer parameters than AlexNet"]
    assert plain.measured == f"{61_100_840 / 717_280:.1f}x" and not plain.holds
    assert rows["SqueezeNet v1.0 is 4.8MB at 32-bit (Table 2)"].measured.startswith("4.76 MiB")
    assert rows["2.0-SqNxt-44 is 31x smaller than VGG-19"].measured == f"{143_667_240 / 4_428_096:.1f}x"
    caffe = rows["v1.1 needs 2.4x less computation than v1.0 (Caffe, 227 input)"]
    # v1.0 with Caffe's conv10 pad=1: 861.34M MACs = the README's 1.72 GFLOP (models.md section 2)
    assert "1.72 vs 0.78 GFLOP" in caffe.note and not caffe.holds


def test_cli_profile_formats(tmp_path, capsys):
    assert main(["profile", "squeezenet1_0", "--input-size", "227", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["params"] == 1_248_424 and data["totals"]["macs"] == 832_667_936
    fire2 = next(r for r in data["layers"] if r["name"] == "fire2")
    assert (fire2["s1x1"], fire2["e1x1"], fire2["e3x3"], fire2["params"]) == (16, 64, 64, 11_920)

    plot, table = tmp_path / "p.png", tmp_path / "profile.txt"
    assert main(["profile", "squeezenet1_1", "--blocks", "--plot", str(plot), "--log", "-o", str(table)]) == 0
    assert capsys.readouterr().out == ""
    out = table.read_text()
    assert "fire9" in out and "fire9/" not in out and "peak activations:" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_compare(capsys):
    assert main(["compare", "squeezenet1_0", "sqnxt23g_w1", "--baseline", "alexnet"]) == 0
    out = capsys.readouterr().out
    assert f"{61_100_840 / 1_248_424:.1f}x fewer" in out and f"{61_100_840 / 543_072:.1f}x fewer" in out


def test_cli_claims_report_with_figure(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(claims_mod, "CLAIM_MODULES", ("squeezelab.analysis.paper_claims", "squeezelab.nope.claims"))
    report = tmp_path / "claims" / "report.md"
    assert main(["claims", "-o", str(report)]) == 0
    text = report.read_text()
    assert "![claims_params.png](claims_params.png)" in text
    assert (report.parent / "claims_params.png").stat().st_size > 1000
    assert "squeezelab.nope.claims does not exist yet" in text


@pytest.mark.parametrize("argv, message", [
    (["profile", "squeezenet3"], "unknown model"),
    (["profile", "squeezenet1_1", "--input-size", "8"], "smaller than this model's minimum"),
    (["profile", "squeezenet1_1", "--plot", "out.jpg"], "ending in .png"),
    (["compare", "squeezenet1_1", "--baseline", "resnet5000"], "unknown model"),
    (["claims", "-o", "report.txt"], "ending in .md"),
])
def test_cli_bad_input_one_line_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []

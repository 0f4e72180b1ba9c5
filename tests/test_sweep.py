"""``squeezelab sweep`` (docs/design-space.md): caching, resume, statistics, verdicts, report, bad input.

Every sweep here is SqueezeNet v1.0 on 64 digits at 8 px, one or two epochs, one thread: well under
a second a point.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from squeezelab.analysis.design_space import (EXPERIMENTS, FINDINGS, DesignPoint, build_report, grid, mean_interval,
                                              summarize, t_quantile, verdict, welch_interval)
from squeezelab.cli.main import main as cli_main
from squeezelab.train import engine
from squeezelab.train import sweep as sweep_module
from squeezelab.train.sweep import Budget, report_from_cache, run_sweep

TINY = Budget("tiny", epochs=1, input_size=8, train_limit=64, val_limit=60, batch_size=32)
RUN = dict(budget=TINY, data="digits", experiments=["bypass"], threads=1, log=lambda m: None)


def _no_training(*args, **kwargs):
    raise AssertionError("the sweep trained a point it should have taken from the cache")


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny bypass sweep (3 points x 2 seeds)."""
    out = tmp_path_factory.mktemp("sweep")
    finals: dict[tuple[str, int], dict] = {}
    real_train = sweep_module.train

    def train_and_note(cfg, **kwargs):  # what training itself measured, for the records to be checked against
        result = real_train(cfg, **kwargs)
        finals[(Path(cfg.output).name, cfg.seed)] = result.history[-1]
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sweep_module, "train", train_and_note)
        result = run_sweep(out, seeds=[0, 1], **RUN)
    assert len(result.trained) == 6 and not result.cached and not result.stopped
    notes = {f"{key}|{seed}": row for (key, seed), row in finals.items()}
    out.with_name(out.name + "-finals.json").write_text(json.dumps(notes))
    return out


def test_grid_shares_points_between_experiments():
    points = grid(["sr", "pct3x3", "bypass"])
    assert len(points) == 5 + 5 + 2 == len(set(points))  # pct3x3=0.5 is SR=0.5; bypass none is SR=0.125
    assert DesignPoint(sr=0.5, pct3x3=0.5) in grid(["pct3x3"]) and DesignPoint() in grid(["sr"])
    assert all(p.sr == 0.5 for _, p in EXPERIMENTS["pct3x3"][1])


def test_finished_points_are_cached_and_not_retrained(swept: Path, monkeypatch: pytest.MonkeyPatch):
    records = sorted((swept / "points").glob("*.json"))
    assert len(records) == 6 and not list((swept / "runs").iterdir())  # finished run folders are removed
    record = json.loads(records[0].read_text())
    finals = json.loads(swept.with_name(swept.name + "-finals.json").read_text())
    final = finals[f"{records[0].stem}|{record['seed']}"]
    assert record["epochs"] == 1 and record["history"] == [final]
    assert (record["top1"], record["top5"], record["test_loss"]) == (final["val_top1"], final["val_top5"],
                                                                   final["val_loss"])
    assert record["train_seconds"] == final["seconds"]
    assert record["size_mb"] == pytest.approx(record["params"] * 4 / 2**20)
    vanilla = json.loads(next((swept / "points").glob("sr0.125_pct0.5_none_s0_*.json")).read_text())
    assert vanilla["imagenet_size_mb"] == pytest.approx(1_248_424 * 4 / 2**20)  # Table 2's 4.8MB
    before = {p.name: p.stat().st_mtime_ns for p in records}
    monkeypatch.setattr(sweep_module, "train", _no_training)
    result = run_sweep(swept, seeds=[0, 1], **RUN)
    assert result.trained == [] and len(result.cached) == 6
    assert {p.name: p.stat().st_mtime_ns for p in (swept / "points").glob("*.json")} == before


def test_interrupted_sweep_resumes_the_unfinished_point(tmp_path: Path):
    two = Budget("tiny2", epochs=2, input_size=8, train_limit=64, val_limit=60, batch_size=32)
    run = {**RUN, "budget": two, "experiments": ["bypass"], "seeds": [0]}
    reference = run_sweep(tmp_path / "whole", **run, max_points=1)
    assert reference.stopped and len(reference.trained) == 1

    out = tmp_path / "interrupted"
    first = run_sweep(out, **run, stop_after_epochs=1)  # the first point stops after epoch 1 of 2
    assert first.stopped and first.trained == [] and not list((out / "points").glob("*.json"))
    assert len(list((out / "runs").glob("*/state.pt"))) == 1
    messages: list[str] = []
    second = run_sweep(out, **{**run, "log": messages.append}, max_points=1)
    assert any("(resuming)" in m for m in messages) and second.trained == reference.trained
    resumed = json.loads((out / "points" / f"{second.trained[0]}.json").read_text())
    whole = json.loads((tmp_path / "whole" / "points" / f"{reference.trained[0]}.json").read_text())
    keys = ("epoch", "train_loss", "val_loss", "val_top1")
    assert [[r[k] for k in keys] for r in resumed["history"]] == [[r[k] for k in keys] for r in whole["history"]]
    assert resumed["top1"] == whole["top1"]  # resumed from epoch 1, bit for bit the uninterrupted run
    third = run_sweep(out, **run)  # the other two points; the report then covers all three
    assert len(third.trained) == 2 and len(third.cached) == 1


def test_intervals_match_scipy_and_a_hand_computation():
    stats = pytest.importorskip("scipy.stats")
    assert mean_interval([1.0, 2.0, 3.0]) == pytest.approx((2 - 4.302652729911275 / math.sqrt(3),
                                                            2 + 4.302652729911275 / math.sqrt(3)), rel=1e-9)
    for df, p in ((1, 0.975), (2.5, 0.975), (7, 0.995), (40, 0.9), (3.3, 0.2)):
        assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-9)
    a, b = [61.2, 63.0, 59.8, 62.4], [57.1, 58.9, 55.0]
    ref = stats.t.interval(0.95, len(a) - 1, loc=statistics.fmean(a), scale=stats.sem(a))
    assert mean_interval(a) == pytest.approx(ref, rel=1e-9)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert welch_interval(a, b) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert welch_interval([1.0, 1.0], [0.0, 0.0]) == (1.0, 1.0) and welch_interval([1.0], [0.0, 1.0]) is None
    assert mean_interval([5.0]) is None


def test_verdicts_on_synthetic_intervals():
    assert verdict("rise", (0.4, 3.0)) == "holds"
    assert verdict("rise", (-2.0, 0.9)) == "does not hold"  # a rise of 1 point or more is ruled out
    assert verdict("rise", (-1.0, 3.0)) == "inconclusive"
    assert verdict("plateau", (-2.0, 0.9)) == "holds"
    assert verdict("plateau", (0.2, 3.0)) == "does not hold"
    assert verdict("plateau", (-1.0, 3.0)) == "inconclusive"
    assert verdict("rise", None) == verdict("plateau", None) == "inconclusive"
    assert verdict("plateau", (-0.5, 1.5), tol=2.0) == "holds"


def test_report_judges_findings_from_records():
    """Synthetic records: simple bypass clearly better, complex indistinguishable, and one with a single seed."""
    top1 = {DesignPoint(): [57.0, 57.5, 58.0], DesignPoint(bypass="simple"): [60.0, 60.5, 61.0],
            DesignPoint(bypass="complex"): [57.1]}
    records = {p: [{"top1": v, "seed": s, "params": 1, "size_mb": 1.0, "imagenet_size_mb": 4.8,
                    "train_seconds": 1.0} for s, v in enumerate(vals)] for p, vals in top1.items()}
    report = build_report({p: summarize(r) for p, r in records.items()}, records, ["bypass"], seeds=3)
    found = {f["key"]: f for f in report["findings"]}
    assert found["simple_bypass"]["verdict"] == "holds"
    assert found["simple_bypass"]["interval"] == pytest.approx(welch_interval(top1[DesignPoint(bypass="simple")],
                                                                              top1[DesignPoint()]))
    assert found["complex_bypass"]["verdict"] == "inconclusive" and found["complex_bypass"]["interval"] is None
    assert set(found) == {f.key for f in FINDINGS if f.experiment == "bypass"}


def test_report_is_rebuilt_from_the_cache(swept: Path, monkeypatch: pytest.MonkeyPatch):
    for name in ("results.json", "report.md", "figure3.png"):
        (swept / name).unlink(missing_ok=True)
    monkeypatch.setattr(sweep_module, "train", _no_training)
    report, files = report_from_cache(swept, budget=TINY, data="digits", experiments=["bypass"], seeds=[0, 1, 2])
    assert {p.name for p in files} == {"results.json", "report.md"}  # no sr/pct3x3 sweep: no Figure 3
    saved = json.loads((swept / "results.json").read_text())
    assert [r["n"] for r in saved["experiments"]["bypass"]] == [2, 2, 2]
    assert [f["verdict"] for f in saved["findings"]] == [f["verdict"] for f in report["findings"]]
    assert "(partial: 2/3 seeds)" in (swept / "report.md").read_text()


def test_figure3_plot_of_a_partial_grid(tmp_path: Path):
    pytest.importorskip("matplotlib")
    result = run_sweep(tmp_path, **{**RUN, "experiments": ["sr"]}, seeds=[0], max_points=2)
    assert result.stopped and (tmp_path / "figure3.png").stat().st_size > 1000
    rows = result.report["experiments"]["sr"]
    assert [r["n"] for r in rows] == [1, 1, 0, 0, 0]
    assert "not run" in (tmp_path / "report.md").read_text()


def _cli(argv: list[str]) -> int:
    try:
        return cli_main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.mark.parametrize("argv", [
    ["--seeds", "-1"], ["--seeds", "0", "0"], ["--experiments", "fire"], ["--budget", "huge"],
    ["--tolerance", "-1"], ["--confidence", "1.5"], ["--max-points", "0"], ["--report-only"],
    ["--output", "FILE"], ["--data", "cifar10:/nonexistent", "--max-points", "1", "--no-plot"],
])
def test_bad_cli_input_is_one_line_and_exit_2(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    (tmp_path / "FILE").write_text("not a folder")
    if "--output" not in argv:
        argv = [*argv, "--output", str(tmp_path / "out")]
    argv = [str(tmp_path / a) if a == "FILE" else a for a in argv]
    assert _cli(["sweep", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error:" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "points").exists()


def test_every_seed_trains_on_the_same_data_subset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Issue 15: the quick budget is one fixed subset; seeds vary the training, not the data."""
    from squeezelab.train import engine

    subset_seeds = []
    real_build = engine.build_datasets

    def spy(*args, **kwargs):
        subset_seeds.append(kwargs["seed"])
        return real_build(*args, **kwargs)

    monkeypatch.setattr(engine, "build_datasets", spy)
    run_sweep(tmp_path, seeds=[3, 4], max_points=2, **{**RUN, "experiments": ["bypass"]})
    assert subset_seeds == [sweep_module.DATA_SEED] * 2
    records = [json.loads(p.read_text()) for p in (tmp_path / "points").glob("*.json")]
    assert sorted(r["seed"] for r in records) == [3, 3]  # seed-major order: every point of seed 3 first


def test_demo_shows_the_committed_sweep_report_beside_the_claims(tmp_path: Path) -> None:
    """``make demo`` passes the committed quick-budget results; their tables, plot and verdicts join the report."""
    from squeezelab.demo.analysis import design_space_stage
    from squeezelab.demo import DemoContext, Report

    committed = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "design_space_quick"
    ctx = DemoContext(Report(tmp_path / "with"), sweep_dir=committed)
    (tmp_path / "with").mkdir()
    design_space_stage(ctx)
    text = (tmp_path / "with" / "report.md").read_text()
    assert "## Design space (measured)" in text and "### Table 3: bypass" in text and "### Findings" in text
    assert (tmp_path / "with" / "design_space_figure3.png").read_bytes() == (committed / "figure3.png").read_bytes()
    assert "(design_space_figure3.png)" in text
    bare = DemoContext(Report(tmp_path / "without"))
    (tmp_path / "without").mkdir()
    design_space_stage(bare)
    assert "squeezelab sweep --budget quick" in (tmp_path / "without" / "report.md").read_text()


COMMITTED = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "design_space_quick"


def _claim_rows(text: str) -> dict[str, list[str]]:
    """The claims report's table rows, keyed by their claim text: ``[paper, measured, verdict, note]``."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        if line.startswith("| ") and len(cells) == 5:
            rows[cells[0]] = cells[1:]
    return rows


def test_claims_judge_the_findings_from_the_sweep_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``squeezelab claims --sweep DIR``: one row per finding, with the sweep's difference, interval and verdict."""
    from squeezelab.analysis import claims

    monkeypatch.setattr(claims, "CLAIM_MODULES", ("squeezelab.analysis.sweep_claims",))
    out = tmp_path / "claims.md"
    assert _cli(["claims", "--sweep", str(COMMITTED), "-o", str(out)]) == 0
    rows = _claim_rows(out.read_text())
    results = json.loads((COMMITTED / "results.json").read_text())
    paper = {f.key: f.paper for f in FINDINGS}
    assert len(results["findings"]) == len(FINDINGS)
    for finding in results["findings"]:
        cells = rows[finding["statement"]]
        assert cells[0] == paper[finding["key"]]
        assert cells[2] == {"holds": "holds", "does not hold": "does not hold", "inconclusive": "n/a"}[
            finding["verdict"]]
        if finding["difference"] is None:
            assert cells[1].startswith("not run") and "not trained yet" in cells[3]
        elif finding["interval"] is None:  # a point with one seed: a difference but no interval, no verdict
            assert cells[1].startswith(f"{finding['difference']:+.2f} top-1 n<2")
            assert finding["verdict"] == "inconclusive" and cells[3].startswith("inconclusive at this scale")
        else:
            low, high = finding["interval"]
            assert cells[1].startswith(f"{finding['difference']:+.2f} top-1 [{low:+.2f}, {high:+.2f}]")
            assert cells[3].startswith(f"{finding['verdict']} at this scale")
    assert (tmp_path / "design_space_figure3.png").stat().st_size > 1000
    assert "![design_space_figure3.png](design_space_figure3.png)" in out.read_text()


def test_claims_without_a_sweep_say_not_measured(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch):
    from squeezelab.analysis import claims

    monkeypatch.setattr(claims, "CLAIM_MODULES", ("squeezelab.analysis.sweep_claims",))
    assert _cli(["claims"]) == 0
    rows = _claim_rows(capsys.readouterr().out)
    assert {f.statement for f in FINDINGS} <= set(rows)
    assert all(rows[f.statement][1:3] == ["not measured", "n/a"] for f in FINDINGS)


@pytest.mark.parametrize("command", ["claims", "demo"])
def test_claims_and_demo_reject_a_folder_without_sweep_results(command: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]):
    (tmp_path / "results.json").write_text('{"not": "a sweep"}')
    for folder in (tmp_path / "missing", tmp_path):
        assert _cli([command, "--sweep", str(folder), "-o", str(tmp_path / "out" / "r.md")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "squeezelab sweep" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("data", ["cifar10:../shared/data", "CIFAR10:/elsewhere/data"])
def test_committed_points_keep_their_cache_keys(data: str):
    """A change of the recipe or of the key must be deliberate: the committed quick-budget Table 3 records
    (3 seeds, AdamW recipe) are found under the keys this code computes, wherever the zips live."""
    quick = sweep_module.BUDGETS["quick"]
    for point in grid(["bypass"]):
        for seed in (0, 1, 2):
            key = sweep_module.point_key(point, seed, quick, data)
            record = json.loads((COMMITTED / "points" / f"{key}.json").read_text())
            assert (record["seed"], record["point"]) == (seed, point.label)


def test_a_changed_default_rule_changes_the_cache_key(swept: Path, monkeypatch: pytest.MonkeyPatch):
    """``lr=None`` and ``weight_decay=None`` name rules (``default_lr``, ``DEFAULT_WEIGHT_DECAY``): a new default
    must retrain every point, not reuse it. Each record keeps the solver it trained with."""
    point = grid(["bypass"])[0]
    key = sweep_module.point_key(point, 0, TINY, "digits")
    record = json.loads((swept / "points" / f"{key}.json").read_text())
    assert record["solver"] == {"optimizer": "adamw", "lr": engine.ADAMW_SOLVER[0] * math.sqrt(32 / 64),
                                "weight_decay": 0.05}
    monkeypatch.setattr(engine, "ADAMW_SOLVER", (engine.ADAMW_SOLVER[0] / 2, 64))
    lower_rate = sweep_module.point_key(point, 0, TINY, "digits")
    monkeypatch.setattr(engine, "DEFAULT_WEIGHT_DECAY", {"sgd": 5e-4, "adamw": 0.01})
    assert len({key, lower_rate, sweep_module.point_key(point, 0, TINY, "digits")}) == 3


@pytest.mark.parametrize("damage", [b"{}", b"null", b"[1, 2]", b'{"top1": "high"}', b"\xff\xfe not UTF-8",
                                    b'{"top1": NaN, "seed": 0}', b"{truncated"])
def test_a_damaged_point_record_is_left_out_and_retrained(damage: bytes, swept: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    """A point record that is not one (empty, null, wrong types, not UTF-8, NaN, cut short) does not crash the
    report after all points trained: it is left out with one warning and the next sweep trains that point again."""
    import shutil

    out = tmp_path / "sweep"
    shutil.copytree(swept, out)
    damaged = sorted((out / "points").glob("*_s1_*.json"))[0]
    original = json.loads(damaged.read_text())
    damaged.write_bytes(damage)
    warnings: list[str] = []
    monkeypatch.setattr(sweep_module, "train", _no_training)
    report, _ = report_from_cache(out, budget=TINY, data="digits", experiments=["bypass"], seeds=[0, 1],
                                  log=warnings.append)
    assert len(warnings) == 1 and str(damaged) in warnings[0] and "not a valid point record" in warnings[0]
    assert sorted(r["n"] for r in report["experiments"]["bypass"]) == [1, 2, 2]
    monkeypatch.undo()
    warnings.clear()
    result = run_sweep(out, seeds=[0, 1], **{**RUN, "log": warnings.append})
    assert len(result.trained) == 1 and len(result.cached) == 5 and "not a valid point record" in warnings[0]
    retrained = json.loads(damaged.read_text())
    assert retrained["seed"] == original["seed"] == 1 and retrained["params"] == original["params"]


def test_a_second_sweep_into_a_locked_folder_is_refused(tmp_path: Path):
    from squeezelab.errors import SqueezelabError
    from squeezelab.train.state import locked_run_dir

    with locked_run_dir(tmp_path / "sweep", what="sweep folder"):
        with pytest.raises(SqueezelabError, match="sweep folder .* is in use"):
            run_sweep(tmp_path / "sweep", seeds=[0], **RUN)

"""``squeezelab simulate`` and the hwsim demo stage: real runs, files written, one-line errors."""

from __future__ import annotations

import csv
import json

import pytest

from squeezelab.cli.main import main
from squeezelab.hwsim import read_topology, simulate, simulate_layer
from squeezelab.hwsim.config import AcceleratorConfig


def test_simulate_writes_json_csv(tmp_path, capsys):
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    rc = main(["simulate", "1.0-SqNxt-23v5", "--array", "8x8", "--dataflow", "os", "--layers",
               "--json", str(out_json), "--csv", str(out_csv)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "8x8 OS" in text and "stage3/block1" in text
    data = json.loads(out_json.read_text())
    api = simulate("sqnxt23v5_w1", 227, AcceleratorConfig(array_rows=8, array_cols=8, dataflow="os"))
    assert data["total"]["cycles"] == api.cycles and data["total"]["macs"] == 224_916_480
    with open(out_csv) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(api.layers) and int(rows[0]["cycles"]) == api.layers[0].cycles


def test_compare_and_sweep(tmp_path, capsys):
    png = tmp_path / "cmp.png"
    assert main(["simulate", "--compare", "sqnxt23_w1", "sqnxt23v5_w1", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "sqnxt23v5_w1 vs sqnxt23_w1: 1.19x faster, 1.14x less energy" in out
    assert png.read_bytes()[:4] == b"\x89PNG"
    table = tmp_path / "sweep.csv"
    assert main(["simulate", "--sweep", "sqnxt23v5_w1", "--arrays", "8x8,16x16", "--dataflows", "ws,best",
                 "--csv", str(table)]) == 0
    with open(table) as f:
        rows = list(csv.DictReader(f))
    assert [(r["array"], r["dataflow"]) for r in rows] == [("8x8", "ws"), ("8x8", "best"), ("16x16", "ws"),
                                                            ("16x16", "best")]
    assert int(rows[3]["cycles"]) <= int(rows[2]["cycles"])


def test_export_scalesim(tmp_path):
    refused = tmp_path / "refused"
    assert main(["simulate", "sqnxt23v5_w1", "--dataflow", "best", "--export-scalesim", str(refused)]) == 2
    assert not refused.exists()  # nothing half-written
    out = tmp_path / "ss"
    assert main(["simulate", "sqnxt23v5_w1", "--array", "8x8", "--export-scalesim", str(out)]) == 0
    assert "ArrayHeight = 8" in (out / "scale.cfg").read_text()
    layers = read_topology(out / "topology.csv")
    cfg = AcceleratorConfig(array_rows=8, array_cols=8)
    assert sum(simulate_layer(layer, cfg).cycles for layer in layers) == simulate("sqnxt23v5_w1", 227, cfg).cycles


@pytest.mark.parametrize("argv", [
    ["simulate", "no_such_model"],
    ["simulate", "sqnxt23_w1", "--array", "16by16"],
    ["simulate", "sqnxt23_w1", "--config", "missing.yaml"],
    ["simulate", "sqnxt23_w1", "--input-size", "0"],
    ["simulate", "--sweep"],
    ["simulate", "sqnxt23_w1:no_such_option=1"],
    ["simulate", "sqnxt23_w1", "--dram-bw", "0"],
])
def test_bad_input_is_one_line(argv, tmp_path, capsys):
    out_json = tmp_path / "never.json"
    assert main(argv + ["--json", str(out_json)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("squeezelab: error:") and err.count("\n") == 1
    assert not out_json.exists()


def test_demo_stage(tmp_path):
    from squeezelab.demo import DemoContext, Report
    from squeezelab.demo.hwsim import stage

    ctx = DemoContext(Report(tmp_path), quick=True)
    stage(ctx)
    report = (tmp_path / "report.md").read_text()
    assert "Hardware simulation" in report and "1.0-SqNxt-23v5" in report
    assert (tmp_path / "hwsim_layers.png").read_bytes()[:4] == b"\x89PNG"
    assert set(ctx.artifacts["hwsim"]) == {"SqueezeNet v1.0", "1.0-SqNxt-23", "1.0-SqNxt-23v5"}

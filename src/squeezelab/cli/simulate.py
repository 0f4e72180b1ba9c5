"""``squeezelab simulate``: per-layer cycles, utilisation, traffic and energy on a PE-array accelerator."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from ..errors import SqueezelabError
from ..extras import require
from ..tables import format_table
from .args import MAX_INPUT_SIZE, check_outputs, positive_int

if TYPE_CHECKING:
    from ..hwsim import AcceleratorConfig, SimResult


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "simulate", help="simulate a model on a systolic-array accelerator (SCALE-Sim cycles, energy)",
        description="Simulate MODEL layer by layer on a PE-array accelerator. Modes: one model (default), "
        "--compare A B (speedup and energy ratio of B over A), --sweep MODEL... (array sizes x dataflows).")
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help="zoo name or alias (e.g. 1.0-SqNxt-23v5), baseline (mobilenet_v1) or torchvision name "
                   "(e.g. resnet18); NAME:KEY=VALUE[,KEY=VALUE] passes builder keywords, e.g. "
                   "squeezenet1_0:conv10_padding=1 or 'sqnxt23v5_w1:depths=[2,4,12,3],width=1.5'")
    p.add_argument("--input-size", help="N or HxW (default: the model's design size)")
    p.add_argument("--config", help="accelerator preset name or .yaml/.json file (default: 'default')")
    p.add_argument("--array", help="PE array ROWSxCOLS, e.g. 16x16 (overrides the config)")
    p.add_argument("--dataflow", choices=("ws", "os", "is", "best"), help="overrides the config's dataflow")
    p.add_argument("--energy", help="energy-cost preset (overrides the config's)")
    p.add_argument("--dram-bw", type=float, help="DRAM bandwidth in bytes per cycle (default: unlimited)")
    p.add_argument("--glb-kib", type=positive_int, help="global buffer in KiB (overrides the config's)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), help="speedup and energy ratio of B over A")
    p.add_argument("--sweep", action="store_true", help="all MODELs on --arrays x --dataflows, one table")
    p.add_argument("--arrays", default="8x8,16x16,32x32", help="sweep arrays (default: 8x8,16x16,32x32)")
    p.add_argument("--dataflows", default="ws,os,is,best", help="sweep dataflows (default: ws,os,is,best)")
    p.add_argument("--layers", action="store_true", help="also print the per-layer table")
    p.add_argument("--json", help="write the full result (or sweep/compare table) as JSON")
    p.add_argument("--csv", help="write the per-layer table (or sweep table) as CSV")
    p.add_argument("--plot", help="write the per-layer time and energy plot (PNG)")
    p.add_argument("--export-scalesim", metavar="DIR",
                   help="write SCALE-Sim topology.csv, layout.csv and scale.cfg for MODEL and the config")
    p.add_argument("--list-presets", action="store_true", help="list accelerator and energy presets")
    p.set_defaults(func=run)


def _input_size(text: str | None) -> int | tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        dims = [int(v) for v in parts]
    except ValueError:
        dims = []
    if len(dims) not in (1, 2) or min(dims) < 1 or max(dims) > MAX_INPUT_SIZE:
        raise SqueezelabError(f"--input-size {text!r} must be N or HxW with sides 1..{MAX_INPUT_SIZE}, e.g. 227 or "
                              f"224x320")
    return dims[0] if len(dims) == 1 else (dims[0], dims[1])


def _config(args: argparse.Namespace, dataflow: Optional[str] = None,
            array: Optional[tuple[int, int]] = None) -> AcceleratorConfig:
    from ..hwsim import parse_array, resolve_config

    cfg = resolve_config(args.config or "default")
    changes = {}
    if args.array or array:
        changes["array_rows"], changes["array_cols"] = array or parse_array(args.array)
    if dataflow or args.dataflow:
        changes["dataflow"] = dataflow or args.dataflow
    if args.energy:
        changes["energy"] = args.energy
    if args.dram_bw is not None:
        changes["dram_bw_bytes_per_cycle"] = args.dram_bw
    if args.glb_kib is not None:
        changes["glb_bytes"] = args.glb_kib * 1024
    return cfg.replace(**changes) if changes else cfg


def _write(path: str, text: str) -> None:
    from ..io import atomic_write_text

    atomic_write_text(path, text)
    print(f"wrote {path}")


def _csv(headers: list[str], rows: list[list]) -> str:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return buf.getvalue()


def run(args: argparse.Namespace) -> int:
    if args.list_presets:
        return _list_presets()
    _input_size(args.input_size)  # checked before any work, like the outputs
    if args.plot:
        require("matplotlib", "--plot")
    config_file = [args.config] if args.config and Path(args.config).is_file() else []
    check_outputs(args.json, args.csv, args.plot, inputs=config_file)
    check_outputs(args.export_scalesim, kind="dir")
    if args.compare:
        if args.models or args.sweep:
            raise SqueezelabError("--compare A B takes its two models itself; drop the other MODEL arguments")
        return _compare(args)
    if args.sweep:
        if not args.models:
            raise SqueezelabError("--sweep needs at least one MODEL, e.g. squeezelab simulate --sweep sqnxt23_w1")
        return _sweep(args)
    if len(args.models) != 1:
        raise SqueezelabError("give exactly one MODEL (or --compare A B, or --sweep MODEL...)")
    return _single(args)


def _list_presets() -> int:
    from ..hwsim import ENERGY_PRESETS, PRESETS

    print(format_table(["accelerator preset", "description"], [[n, c.describe()] for n, c in PRESETS.items()]))
    print()
    print(format_table(["energy preset", "MAC", "RF", "NoC", "GLB", "DRAM", "unit", "source"],
                       [[n, c.mac, c.rf, c.noc, c.glb, c.dram, c.unit, c.source] for n, c in ENERGY_PRESETS.items()]))
    return 0


def _single(args: argparse.Namespace) -> int:
    from ..hwsim import layout_csv, scalesim_config, simulate, topology_csv
    from ..models import trace_model

    cfg = _config(args)
    model, size = args.models[0], _input_size(args.input_size)
    if args.export_scalesim:
        traced = trace_model(model, size)
        out = Path(args.export_scalesim)
        files = {"scale.cfg": scalesim_config(cfg, run_name=traced.spec.name.replace(".", "_")),
                 "topology.csv": topology_csv(traced.layers), "layout.csv": layout_csv(traced.layers)}
        for name, text in files.items():
            _write(str(out / name), text)
        print(f"run: python -m scalesim.scale -c {out}/scale.cfg -t {out}/topology.csv -l {out}/layout.csv -p OUTDIR")
        return 0
    result = simulate(model, size, cfg)
    unit = result.energy_unit
    print(f"{result.model} @ {result.input_size[0]}x{result.input_size[1]} on {cfg.describe()}")
    if args.layers:
        rows = [[r.name, r.kind, f"{r.channels}->{r.filters} {r.kernel_h}x{r.kernel_w}/{r.stride}", r.macs, r.dataflow,
                 r.folds, round(r.mapping_eff, 3), round(r.utilization, 3), r.cycles, round(r.energy / r.macs, 2)]
                for r in result.layers]
        print(format_table(["layer", "kind", "shape", "MACs", "df", "folds", "map eff", "util", "cycles",
                            f"{unit}/MAC"], rows))
        print()
    stages = result.stages() + [result.total]
    print(format_table(
        ["stage", "layers", "MACs", "cycles", "util", "DRAM words", f"energy ({unit})", f"{unit}/MAC"],
        [[s.name, s.layers, s.macs, s.cycles, round(s.utilization, 3), s.dram_words, s.energy,
          round(s.energy_per_mac, 2)] for s in stages]))
    total = result.total
    shares = ", ".join(f"{k} {v / total.energy:.0%}" for k, v in total.energy_by_level.items() if v)
    print(f"time {total.seconds * 1e3:.3f} ms at {cfg.clock_hz / 1e6:g} MHz; energy by level: {shares}; "
          f"{len(result.zero_cycle_ops)} zero-PE-cycle ops (pool/norm/act/add/concat) not counted")
    if args.json:
        _write(args.json, result.to_json())
    if args.csv:
        _write(args.csv, result.to_csv())
    if args.plot:
        _plot([result], args.plot)
    return 0


def _plot(results: Sequence[SimResult], path: str) -> None:
    from ..hwsim.study import plot_layers
    from ..io import atomic_path

    fig = plot_layers(results)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    print(f"wrote {path}")


def _compare(args: argparse.Namespace) -> int:
    from ..hwsim import compare

    cfg = _config(args)
    size = _input_size(args.input_size)
    cmp = compare(*args.compare, input_size=size, config=cfg)
    unit = cmp.baseline.energy_unit
    rows = [[r.model, f"{r.input_size[0]}x{r.input_size[1]}", r.macs, r.cycles, round(r.utilization, 3), r.energy,
             round(r.energy / r.macs, 2)] for r in (cmp.baseline, cmp.candidate)]
    print(f"on {cfg.describe()}")
    print(format_table(["model", "input", "MACs", "cycles", "util", f"energy ({unit})", f"{unit}/MAC"], rows))
    print(f"{cmp.candidate.model} vs {cmp.baseline.model}: {cmp.speedup:.2f}x faster, "
          f"{cmp.energy_ratio:.2f}x less energy")
    if args.json:
        _write(args.json, json.dumps({"config": cfg.to_dict(), "baseline": rows[0], "candidate": rows[1],
                                      "speedup": cmp.speedup, "energy_ratio": cmp.energy_ratio}, indent=2))
    if args.plot:
        _plot([cmp.baseline, cmp.candidate], args.plot)
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from ..hwsim import DATAFLOWS, parse_array, simulate

    arrays = [parse_array(a) for a in args.arrays.split(",") if a]
    dataflows = [d.strip() for d in args.dataflows.split(",") if d.strip()]
    bad = [d for d in dataflows if d not in DATAFLOWS]
    if bad or not dataflows or not arrays:
        raise SqueezelabError(f"--dataflows must list some of {', '.join(DATAFLOWS)}; --arrays some ROWSxCOLS")
    size = _input_size(args.input_size)
    headers = ["model", "array", "dataflow", "MACs", "cycles", "util", "energy", "energy/MAC", "ms"]
    rows = []
    for model in args.models:
        for rows_, cols in arrays:
            for df in dataflows:
                r = simulate(model, size, _config(args, dataflow=df, array=(rows_, cols)))
                rows.append([r.model, f"{rows_}x{cols}", df, r.macs, r.cycles, round(r.utilization, 3),
                             r.energy, round(r.energy / r.macs, 3), round(r.seconds * 1e3, 3)])
    print(format_table(headers, rows))
    if args.csv:
        _write(args.csv, _csv(headers, rows))
    if args.json:
        _write(args.json, json.dumps([dict(zip(headers, row)) for row in rows], indent=2))
    return 0

"""The co-design search's must-shows (issue 31), each measured by the search's own exact costs.

Sections (``--only`` picks some):

- ``ordering``: the paper's hand-made moves 1.0-SqNxt-23 v1 -> v5 (§6) costed on 8/16/32-square arrays x
  WS/OS/best dataflow (128 KiB GLB), relative to v1; which orderings hold where.
- ``exact``: every split of SqNxt-23's 21 blocks (1,140) x the default hardware grid under the paper
  accelerator's area (the ``depth21`` space), enumerated from a cold start; wall and CPU seconds.
- ``nsga2``: NSGA-II (population 50) on the same space for ``--seeds`` seeds x ``--trials`` evaluations, its
  hypervolume against the exact front's after every 10 trials; random sampling as the baseline.
- ``arch``: the ``arch`` space on the paper's accelerator (Squeezelerator: 32x32, best dataflow per layer,
  128 KiB): minimise cycles and energy with the proxy >= 1.0-SqNxt-23v5's; the design with the largest
  min(cycles gain, energy gain) over v5.
- ``arch21``: the same keeping SqNxt-23's 21 blocks (the paper's moves), so that the proxy cannot be met by
  a shallow network with a wide last stage (what ``arch`` finds with the params proxy).
- ``joint``: v5 on its best (least-EDP) accelerator of the grid, then the ``joint`` space minimising EDP with
  the proxy >= v5's, both under the same area budget; the EDP gain. ``joint21`` keeps the 21 blocks.

The proxy is the number of parameters (``--proxy``); docs/codesign.md says why. Costs are for one 227 x 227
image, energies in the preset's units (Eyeriss-normalised, a MAC = 1)::

    nice -n 10 python benchmarks/codesign.py [--seeds 0 1 2 3 4] [--trials 1000] [--only exact nsga2]
    nice -n 10 python benchmarks/codesign.py --only nsga2 --population 20 --mutation-prob 0.3 --samplers nsga2 \
        --seeds 0 1 2 3 4 5 6 7 8 9

Prints a table per section and writes ``benchmarks/results/codesign.json`` (sections merged into an existing
file, so sections can be rerun one at a time).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from squeezelab.export.timing import machine_info
from squeezelab.io import atomic_write_text
from squeezelab.search import CostModel, Hardware, HardwareSpace, PAPER_SEQUENCE, Problem, REFERENCES, get_space
from squeezelab.search.exact import enumerate_problem
from squeezelab.search.optimize import POPULATION, feasible_points, finished_trials, hypervolume_history, run_study, trial_design
from squeezelab.search.space import V5
from squeezelab.tables import format_table

RESULTS = Path(__file__).resolve().parent / "results" / "codesign.json"
SECTIONS = ("ordering", "exact", "nsga2", "arch", "arch21", "joint", "joint21")


def ordering() -> dict[str, Any]:
    costs, space = CostModel(), HardwareSpace()
    rows, table = [], []
    for side in (8, 16, 32):
        for dataflow in ("ws", "os", "best"):
            config = space.config(Hardware(side, side, 128, dataflow))
            results = [costs.cost(REFERENCES[name], config) for name in PAPER_SEQUENCE]
            cycles = [r.cycles / results[0].cycles for r in results]
            energy = [r.energy / results[0].energy for r in results]
            edp = [c * e for c, e in zip(cycles, energy)]
            row = {"array": f"{side}x{side}", "dataflow": dataflow, "cycles": cycles, "energy": energy, "edp": edp,
                   "v5_beats_v1": cycles[-1] < 1 and energy[-1] < 1,
                   **{f"{k}_monotone": all(a > b for a, b in zip(v, v[1:]))
                      for k, v in (("cycles", cycles), ("energy", energy), ("edp", edp))}}
            rows.append(row)
            table.append([row["array"], dataflow, " ".join(f"{c:.3f}" for c in cycles),
                          " ".join(f"{e:.3f}" for e in energy), row["v5_beats_v1"], row["cycles_monotone"],
                          row["energy_monotone"], row["edp_monotone"]])
    print("v1 -> v5 (cycles and energy relative to v1; v2-v4 recalled, not verified: shared/reference/hwsim.md T2)")
    print(format_table(["array", "df", "cycles v1..v5", "energy v1..v5", "v5<v1 both", "cycles mono",
                        "energy mono", "EDP mono"], table))
    return {"designs": list(PAPER_SEQUENCE), "rows": rows,
            "v5_beats_v1_everywhere": all(r["v5_beats_v1"] for r in rows),
            "strictly_ordered_cycles_on": [f"{r['array']} {r['dataflow']}" for r in rows if r["cycles_monotone"]],
            "strictly_ordered_energy_on": [f"{r['array']} {r['dataflow']}" for r in rows if r["energy_monotone"]],
            "strictly_ordered_edp_on": [f"{r['array']} {r['dataflow']}" for r in rows if r["edp_monotone"]]}


def _depth21_problem() -> Problem:
    return Problem(get_space("depth21"))


def exact(problem: Problem) -> tuple[dict[str, Any], Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    enumeration = enumerate_problem(problem)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    result = {"space": "depth21", "architectures": len(enumeration.archs), "accelerators": len(enumeration.hardware),
              "designs": enumeration.designs, "front": len(enumeration.front),
              "hypervolume": enumeration.hypervolume, "wall_seconds": wall, "cpu_seconds": cpu,
              "layer_simulations": problem.costs.misses, "objectives": list(problem.objectives), "proxy": problem.proxy}
    print(format_table(["architectures", "accelerators", "designs", "front", "wall s", "CPU s (1 core)"],
                       [[len(enumeration.archs), len(enumeration.hardware), f"{enumeration.designs:,}",
                         len(enumeration.front), f"{wall:.1f}", f"{cpu:.1f}"]]))
    return result, enumeration


def optimizer_runs(problem: Problem, enumeration: Any, seeds: list[int], trials: int, population: int = POPULATION,
                   mutation_prob: Optional[float] = None, samplers: Sequence[str] = ("nsga2", "random")) -> dict[str, Any]:
    normalizer, target = enumeration.normalizer(), enumeration.hypervolume
    out: dict[str, Any] = {"trials": trials, "seeds": seeds, "population": population, "mutation_prob": mutation_prob,
                           "exact_hypervolume": target}
    table = []
    for sampler in samplers:
        runs = []
        for seed in seeds:
            wall = time.perf_counter()
            study = run_study(problem, trials, sampler, seed, storage=None, study_name=f"{sampler}-{seed}",
                              population=population, mutation_prob=mutation_prob)
            history = hypervolume_history(problem, study, normalizer)
            share = history.hypervolume / target
            runs.append({"seed": seed, "final_share": float(share[-1]), "reached_99_at": history.reached(0.99 * target),
                         "trials": history.trials.tolist(), "share": share.tolist(),
                         "wall_seconds": time.perf_counter() - wall})
            table.append([sampler, seed, f"{share[-1]:.4f}", runs[-1]["reached_99_at"], f"{runs[-1]['wall_seconds']:.0f}"])
        out[sampler] = {"runs": runs, "min_final_share": min(r["final_share"] for r in runs),
                        "all_reach_99": all(r["reached_99_at"] is not None for r in runs)}
    print(format_table(["sampler", "seed", f"HV share at {trials}", "99% at trial", "wall s"], table))
    return out


def _design(evaluation: Any, v5: Any, space: Any) -> dict[str, Any]:
    return {"spec": evaluation.arch.spec, "hardware": evaluation.hardware.to_dict(), "area": evaluation.area,
            "cycles": evaluation.cost.cycles, "energy": evaluation.cost.energy, "edp": evaluation.cost.edp,
            "proxies": evaluation.proxies, "cycles_gain": 1 - evaluation.cost.cycles / v5.cost.cycles,
            "energy_gain": 1 - evaluation.cost.energy / v5.cost.energy, "edp_gain": 1 - evaluation.cost.edp / v5.cost.edp,
            "simulate": f"squeezelab simulate '{evaluation.arch.spec}' --input-size 227 --config {space.base} "
                        f"--array {evaluation.hardware.array_rows}x{evaluation.hardware.array_cols} "
                        f"--dataflow {evaluation.hardware.dataflow} --glb-kib {evaluation.hardware.glb_kib}"}


def _feasible_evaluations(problem: Problem, study: Any) -> list[Any]:
    numbers = set(feasible_points(problem, study)[0])
    designs = dict.fromkeys(trial_design(t) for t in finished_trials(study) if t.number in numbers)
    return [problem.evaluate(arch, hw) for arch, hw in designs]


def arch_search(trials: int, seed: int, space: str = "arch") -> dict[str, Any]:
    problem = Problem(get_space(space), ("cycles", "energy"))
    paper = problem.space.hardware.paper
    v5 = problem.evaluate(V5, paper)
    problem.min_proxy = v5.proxies[problem.proxy]
    study = run_study(problem, trials, "nsga2", seed, storage=None, study_name=space)
    evaluations = _feasible_evaluations(problem, study)
    best = max(evaluations, key=lambda e: min(1 - e.cost.cycles / v5.cost.cycles, 1 - e.cost.energy / v5.cost.energy))
    found = _design(best, v5, problem.space.hardware)
    both10 = [e for e in evaluations if e.cost.cycles <= 0.9 * v5.cost.cycles and e.cost.energy <= 0.9 * v5.cost.energy]
    print(format_table(["design", "cycles", "energy", f"proxy {problem.proxy}", "cycles gain", "energy gain"],
                       [["1.0-SqNxt-23v5", f"{v5.cost.cycles:,}", f"{v5.cost.energy:.4g}",
                         f"{v5.proxies[problem.proxy]:.4g}", "", ""],
                        [found["spec"].split(":", 1)[1], f"{best.cost.cycles:,}", f"{best.cost.energy:.4g}",
                         f"{best.proxies[problem.proxy]:.4g}", f"{found['cycles_gain']:.1%}",
                         f"{found['energy_gain']:.1%}"]]))
    return {"space": space, "trials": trials, "seed": seed, "proxy": problem.proxy, "accelerator": paper.to_dict(),
            "v5": _design(v5, v5, problem.space.hardware), "best": found,
            "designs_beating_v5_by_10pct_in_both": len(both10), "feasible_designs": len(evaluations)}


def joint_search(trials: int, seed: int, space_name: str = "joint") -> dict[str, Any]:
    problem = Problem(get_space(space_name), ("edp",))
    space = problem.space.hardware
    v5_all = [problem.evaluate(V5, hw) for hw in space.feasible()]
    v5 = min(v5_all, key=lambda e: e.cost.edp)
    problem.min_proxy = v5.proxies[problem.proxy]
    study = run_study(problem, trials, "nsga2", seed, storage=None, study_name=space_name)
    evaluations = _feasible_evaluations(problem, study)
    best = min(evaluations, key=lambda e: e.cost.edp)
    found = _design(best, v5, space)
    print(format_table(["design", "accelerator", "area", "EDP", f"proxy {problem.proxy}", "EDP gain"],
                       [["1.0-SqNxt-23v5 (best of grid)", v5.hardware.config(space.base_config).name, f"{v5.area:g}",
                         f"{v5.cost.edp:.4g}", f"{v5.proxies[problem.proxy]:.4g}", ""],
                        [found["spec"].split(":", 1)[1], best.hardware.config(space.base_config).name, f"{best.area:g}",
                         f"{best.cost.edp:.4g}", f"{best.proxies[problem.proxy]:.4g}", f"{found['edp_gain']:.1%}"]]))
    return {"space": space_name, "trials": trials, "seed": seed, "proxy": problem.proxy, "area_budget": space.budget,
            "v5_accelerators_tried": len(v5_all), "v5_best": _design(v5, v5, space), "best": found}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--population", type=int, default=POPULATION, help="NSGA-II population (default 50)")
    parser.add_argument("--mutation-prob", type=float, help="NSGA-II mutation probability (default 1/parameters)")
    parser.add_argument("--samplers", nargs="+", default=["nsga2", "random"], choices=["nsga2", "tpe", "random"])
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    path = Path(args.out)
    record = json.loads(path.read_text()) if path.is_file() else {}
    record["machine"] = machine_info()

    def save(name: str, value: Any) -> None:
        record[name] = value
        atomic_write_text(path, json.dumps(record, indent=1, default=float))

    if "ordering" in args.only:
        save("ordering", ordering())
    if {"exact", "nsga2"} & set(args.only):
        problem = _depth21_problem()
        result, enumeration = exact(problem)
        if "exact" in args.only:
            save("exact", result)
        if "nsga2" in args.only:
            key = "nsga2" + (f"_population{args.population}" if args.population != POPULATION else "") + (
                f"_mutation{args.mutation_prob:g}" if args.mutation_prob is not None else "")
            save(key, optimizer_runs(problem, enumeration, args.seeds, args.trials, args.population,
                                     args.mutation_prob, args.samplers))
    for space in ("arch", "arch21"):
        if space in args.only:
            save(space, arch_search(args.trials, args.seeds[0], space))
    for space in ("joint", "joint21"):
        if space in args.only:
            save(space, joint_search(args.trials, args.seeds[0], space))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

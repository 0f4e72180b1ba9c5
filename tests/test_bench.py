"""Interleaved timing, the sgemm roofline, ``bench_model`` and the ``squeezelab bench`` CLI.

Budget: about 10 s on 2 idle cores (32 px inputs, 3 timed rounds).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torchvision

from _export_helpers import calibrated, single_thread  # noqa: F401
from squeezelab.analysis import count_macs
from squeezelab.cli.main import main
from squeezelab.deploy.bench import bench_model, torchvision_model
from squeezelab.export import timing
from squeezelab.export.timing import OtherLoad, interleaved, sgemm_gflops
from squeezelab.weights import build_model

pytestmark = pytest.mark.usefixtures("single_thread")


def test_interleaved_rotates_the_order_and_counts_rounds() -> None:
    calls: list[str] = []
    timings = interleaved({n: (lambda n=n: calls.append(n)) for n in "abc"}, reps=4, warmup=1, block=1,
                          settle=0)
    assert calls[:3] == list("abc")  # warm-up round
    assert calls[3:] == list("abc" "bca" "cab" "abc")
    assert all(len(t.samples) == 4 and t.p90 >= t.median > 0 for t in timings.values())


class FakeClock:
    """A ``time`` stand-in for squeezelab.export.timing: ``perf_counter`` moves only when ``advance`` is called,
    so what the timing code records can be checked exactly, whatever else the machine is doing."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_interleaved_blocks_time_only_the_calls_after_settling(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(timing, "time", clock)
    calls: list[str] = []
    slow_first = {"a": True, "b": True}

    def call(name: str) -> None:
        calls.append(name)
        clock.advance(1.0 if slow_first[name] else 2 ** -10)  # the first call of each block pays for its predecessor
        slow_first[name] = False
        slow_first["b" if name == "a" else "a"] = True

    timings = interleaved({n: (lambda n=n: call(n)) for n in "ab"}, reps=2, warmup=0, block=3, settle=1)
    assert "".join(calls) == "aaaa" "bbbb" "bbbb" "aaaa"
    assert {n: t.samples for n, t in timings.items()} == {"a": [2 ** -10] * 6, "b": [2 ** -10] * 6}


def test_interleaved_stops_after_max_seconds_but_keeps_three_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(timing, "time", clock)
    at_least_three = interleaved({"spin": lambda: clock.advance(1.0)}, reps=1000, warmup=0, max_seconds=0.0,
                                 block=1, settle=0)
    assert len(at_least_three["spin"].samples) == 3
    budget = interleaved({"spin": lambda: clock.advance(1.0)}, reps=1000, warmup=0, max_seconds=4.5, block=1,
                         settle=0)
    assert len(budget["spin"].samples) == 5  # stops at the first round past 4.5 timed seconds


def test_sgemm_rate_is_the_fastest_multiply(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    durations = iter([0.0, 0.5, 0.25, 0.4])  # the untimed first multiply, then three timed ones
    real_mm = torch.mm

    def mm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        clock.advance(next(durations))
        return real_mm(a, b, out=out)

    monkeypatch.setattr(timing, "time", clock)
    monkeypatch.setattr(timing.torch, "mm", mm)
    threads = torch.get_num_threads()
    rate = sgemm_gflops(threads=1, n=64, reps=3)
    assert rate == pytest.approx(2 * 64 ** 3 / 0.25 / 1e9)  # 2 n^3 flops in the best of the timed calls
    assert torch.get_num_threads() == threads  # the thread count is restored


def test_other_load_is_the_machines_busy_time_minus_our_own(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, busy, own = FakeClock(), iter([50.0, 54.0]), iter([10.0, 11.0])
    monkeypatch.setattr(timing, "time", clock)
    monkeypatch.setattr(timing, "_busy_seconds", lambda: next(busy))
    monkeypatch.setattr(timing, "_own_seconds", lambda: next(own))
    with OtherLoad() as other:
        clock.advance(2.0)
    assert other.cores == pytest.approx((4.0 - 1.0) / 2.0)  # 4 busy core-seconds, 1 of them ours, in 2 s


def test_own_seconds_count_waited_children() -> None:
    """A child that burns 0.35 s of its own CPU time adds at least 0.3 s to ours once waited for (CPU time, so
    the machine's load cannot change the result). The margin covers ``os.times``, which reports children's
    user and system time each truncated to clock ticks (1/100 s) and split between them by tick sampling."""
    child = "import time\nwhile time.process_time() < 0.35: pass\n"
    before = timing._own_seconds()
    subprocess.run([sys.executable, "-c", child], check=True)
    assert timing._own_seconds() - before >= 0.3


def test_torchvision_model_carries_the_zoo_weights() -> None:
    model = calibrated("squeezenet1_0")
    tv = torchvision_model(model)
    assert isinstance(tv, torchvision.models.SqueezeNet)
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(tv(x), model(x), rtol=0, atol=1e-6)
    assert torchvision_model(calibrated("sqnxt23_w1")) is None


def test_bench_model_rows_are_consistent() -> None:
    model = calibrated("squeezenet1_1")
    rows = bench_model(model, batch=2, backends=["torchvision", "eager", "onnxruntime"], input_size=32, threads=1,
                       reps=3, warmup=1, sgemm=50.0)
    by = {r.backend: r for r in rows}
    assert set(by) == {"torchvision", "eager", "onnxruntime"}
    flops = 2 * count_macs(model, 32) * 2
    for r in rows:
        assert r.reference == "torchvision" and r.reps == 12 and r.error <= 1e-4  # 3 rounds of 4
        assert r.gflops == pytest.approx(flops / (r.median_ms / 1e3) / 1e9)
        assert r.roofline_fraction == pytest.approx(r.gflops / 50.0)
        assert r.images_per_s == pytest.approx(2 / (r.median_ms / 1e3))
        assert r.speedup_vs_reference == pytest.approx(by["torchvision"].median_ms / r.median_ms)
    assert by["torchvision"].speedup_vs_reference == 1.0


def test_cli_bench_writes_json(tmp_path, capsys) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", "sqnxt23v5_w1", "--batch", "1", "--backends", "zoo,eager", "--input-size", "32",
                 "--threads", "1", "--reps", "3", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "load average" in text and "sgemm" in text and "vs zoo" in text
    record = json.loads(out.read_text())
    assert record["threads"] == 1 and len(record["machine"]["load_average"]) == 3
    assert {r["backend"] for r in record["rows"]} == {"zoo", "eager"}


@pytest.mark.parametrize("argv, message", [
    (["--batch", "0"], "batch sizes must be positive"),
    (["--backends", "tensorrt"], "unknown backend"),
])
def test_cli_bench_bad_arguments(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "squeezenet1_1", *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_cli_bench_unknown_model_is_one_line(capsys) -> None:
    assert main(["bench", "squeezenet7", "--batch", "1"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_machine_info_records_the_cpu_flags_and_kernel_caps(monkeypatch) -> None:
    """Every benchmark record says which INT8/BF16 instructions the CPU had and how PyTorch's kernels were capped."""
    from squeezelab.cpu import REPORTED_FLAGS, cpu_flag_set
    from squeezelab.export.timing import machine_info

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    info = machine_info()
    assert info["cpu_flags"] == {name: name in cpu_flag_set() for name in REPORTED_FLAGS}
    assert info["kernel_caps"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    json.dumps(info)  # a record must serialise


def test_only_the_backends_asked_for_are_timed(capsys) -> None:
    rows = bench_model(calibrated("squeezenet1_1"), batch=1, backends=["eager"], input_size=32, threads=1, reps=3,
                       warmup=1)
    assert [(r.backend, r.reference, r.speedup_vs_reference) for r in rows] == [("eager", "eager", 1.0)]


def test_cli_bench_times_the_cifar10_checkpoint_at_its_crop(tmp_path, capsys) -> None:
    """The small-input stem (stride 1) has torchvision's weight shapes but not its geometry: no torchvision row,
    the zoo model is the reference, and the input is the checkpoint's 32 px crop."""
    model = build_model("squeezenet1_1.cifar10", architecture="squeezenet1_1")
    assert torchvision_model(model) is None
    out = tmp_path / "bench.json"
    assert main(["bench", "squeezenet1_1", "--weights", "squeezenet1_1.cifar10", "--batch", "1", "--backends",
                 "zoo,eager", "--threads", "1", "--reps", "3", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert "input 32x32" in captured.out and captured.err == ""
    record = json.loads(out.read_text())
    assert {r["backend"] for r in record["rows"]} == {"zoo", "eager"} and record["input_sizes"] == {
        "squeezenet1_1": 32}
    assert all(r["reference"] == "zoo" and r["error"] <= 1e-4 for r in record["rows"])
    assert main(["bench", "squeezenet1_1", "--weights", "squeezenet1_1.cifar10", "--batch", "1", "--backends",
                 "torchvision", "--threads", "1", "--reps", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "torchvision has no model of squeezenet1_1" in err[0]
    assert main(["bench", "squeezenet1_1", "--weights", "squeezenet1_1.cifar10", "--batch", "1", "--backends",
                 "torchvision,zoo", "--threads", "1", "--reps", "3"]) == 0
    assert "backend torchvision skipped" in capsys.readouterr().err

"""The default recipe gives the same kind of result on any x86 CPU.

Another machine rounds differently: oneDNN picks other convolution kernels
(AVX-512, AVX2, SSE4.1) and ATen other elementwise kernels. Before the recipe
was fixed, one seeded SqueezeNext run on digits ended at 49% on an AVX-512 CPU and
80% under ``ONEDNN_MAX_CPU_ISA=AVX2``. This test trains the same seeded run under
two kernel sets, in subprocesses, and checks that both finish finite, far above
chance and close to each other. The margin comes from ``benchmarks/recipe_spread.py``
(``benchmarks/results/recipe_spread.json``, docs/training.md "Portability").
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

#: Largest |top-1 difference| between two kernel sets for one seed, measured over 5 seeds x 4 kernel sets, plus margin.
KERNEL_SET_MARGIN = 20.0
#: Lowest best top-1 measured over 5 seeds x 4 kernel sets, minus margin (chance is 10%).
FLOOR = 40.0

_RUN = """
import json, sys, tempfile
from squeezelab.train import TrainConfig, train
with tempfile.TemporaryDirectory() as tmp:
    result = train(TrainConfig("sqnxt23_w1", data="digits", input_size=8, epochs=6, threads=1, seed=0,
                               progress=False, output=tmp + "/run"))
print(json.dumps({"best_top1": result.best_top1, "val_loss": [row["val_loss"] for row in result.history]}))
"""


def _train_under(isa: str) -> dict:
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": isa}
    done = subprocess.run([sys.executable, "-c", _RUN], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_same_seeded_run_agrees_across_kernel_sets() -> None:
    sse41, avx2 = _train_under("SSE41"), _train_under("AVX2")
    for run in (sse41, avx2):
        assert all(math.isfinite(v) and v < 3 * math.log(10) for v in run["val_loss"]), run
        assert run["best_top1"] >= FLOOR, run
    assert abs(sse41["best_top1"] - avx2["best_top1"]) < KERNEL_SET_MARGIN, (sse41, avx2)

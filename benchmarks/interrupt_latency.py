"""How long ``squeezelab eval`` takes to exit after Ctrl-C (docs/reliability.md, "Errors").

Writes ``--images`` synthetic 500x375 JPEGs named after ImageNet classes (flat ImageNet layout) into a
temporary folder, starts ``squeezelab eval squeezenet1_1`` on them in its own process group, sends
SIGINT to the group after ``--delay`` seconds (as a terminal's Ctrl-C does), and records the time
until the process has exited, its exit status and its last line. Each setting runs ``--runs`` times.
Run: ``.venv/bin/python benchmarks/interrupt_latency.py [--json benchmarks/results/interrupt_latency.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from squeezelab.export.timing import machine_info
from squeezelab.io import atomic_write_text
from squeezelab.tables import format_table
from squeezelab.weights.imagenet import imagenet_wnid_index

#: (label, extra ``squeezelab eval`` arguments)
SETTINGS = (("default (batch 50)", []), ("--workers 2", ["--workers", "2"]),
            ("--batch-size 256", ["--batch-size", "256"]))


def write_images(folder: Path, count: int) -> None:
    """``count`` noise JPEGs of ImageNet size named ``<wnid>_<i>.JPEG`` (the flat ImageNet layout)."""
    rng = np.random.default_rng(0)
    wnids = sorted(imagenet_wnid_index())
    for i in range(count):
        pixels = rng.integers(0, 256, size=(375, 500, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{wnids[i % len(wnids)]}_{i}.JPEG", quality=90)


def interrupt_once(folder: Path, extra: list[str], delay: float) -> dict[str, object]:
    """Start eval, SIGINT its process group after ``delay`` s; seconds from the signal to exit."""
    command = [sys.executable, "-m", "squeezelab", "eval", "squeezenet1_1", "--weights",
               "squeezenet1_1.torchvision", "--data", str(folder), "--no-progress", *extra]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    time.sleep(delay)
    if process.poll() is not None:
        raise SystemExit(f"eval ended before the signal ({delay} s); use more --images")
    sent = time.perf_counter()
    os.killpg(process.pid, signal.SIGINT)
    output, _ = process.communicate()
    seconds = time.perf_counter() - sent
    lines = output.strip().splitlines()
    return {"seconds": seconds, "returncode": process.returncode, "last_line": lines[-1] if lines else ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=8.0, help="seconds from start to Ctrl-C (after start-up)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/interrupt_latency.json"))
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        write_images(Path(tmp), args.images)
        for label, extra in SETTINGS:
            runs = [interrupt_once(Path(tmp), extra, args.delay) for _ in range(args.runs)]
            results.append({"setting": label, "args": extra, "runs": runs})
    rows = [[r["setting"], f"{statistics.median(x['seconds'] for x in r['runs']):.2f}",
             f"{max(x['seconds'] for x in r['runs']):.2f}", ",".join(str(x["returncode"]) for x in r["runs"]),
             r["runs"][-1]["last_line"]] for r in results]
    print(format_table(["setting", "median s", "max s", "exit", "last line"], rows))
    payload = {"machine": machine_info(), "images": args.images, "delay": args.delay, "results": results}
    atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

"""Training speed levers that must not change results: the ``--amp auto`` choice, its log line,
and the NumPy fast path of the small-input augmentation (same pixels as torchvision's). Not timed."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from squeezelab.cpu import cpu_bf16_fast, cpu_flag_set, torch_bf16_native
from squeezelab.data import build_datasets
from squeezelab.train import TrainConfig, train
from squeezelab.train.engine import choose_amp, precision_label

CPU = torch.device("cpu")


@pytest.mark.parametrize(("flags", "native", "fast"), [
    ({"avx2", "avx512f", "avx512_bf16"}, True, True),
    ({"avx2", "amx_bf16", "amx_tile"}, True, True),
    ({"avx2", "avx512f", "avx512_vnni"}, True, False),  # AVX-512 without BF16: emulated
    ({"avx2", "avx512f", "avx512_bf16"}, False, False),  # ONEDNN_MAX_CPU_ISA / ATEN_CPU_CAPABILITY capped
    (set(), False, False),
])
def test_bf16_needs_the_flag_and_uncapped_kernels(flags: set[str], native: bool, fast: bool) -> None:
    assert cpu_bf16_fast(frozenset(flags), native) is fast


def test_cpu_flags_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flag_set(str(info)) == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    assert cpu_flag_set(str(tmp_path / "missing")) == frozenset()


def test_auto_amp_choice_on_cpu() -> None:
    assert choose_amp("auto", CPU, bf16_fast=True)[0] is torch.bfloat16
    assert choose_amp("auto", CPU, bf16_fast=False)[0] is None
    assert choose_amp("on", CPU, bf16_fast=False)[0] is torch.bfloat16  # forced, even where emulated
    assert choose_amp("off", CPU, bf16_fast=True)[0] is None
    assert [precision_label(d) for d in (None, torch.bfloat16, torch.float16)] == \
        ["fp32", "bf16 autocast", "fp16 autocast"]


def test_capped_isa_keeps_auto_on_fp32() -> None:
    """Under ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 (e.g. the portability runs) auto stays FP32."""
    code = ("import torch; from squeezelab.train.engine import choose_amp; "
            "print(choose_amp('auto', torch.device('cpu')))")
    env = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.startswith("(None,")


@pytest.mark.parametrize("cap", ["AVX2", "AVX512_CORE", "AVX512_CORE_VNNI"])
def test_onednn_cap_below_bf16_is_not_native(cap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert not torch_bf16_native()
    assert choose_amp("auto", CPU)[0] is None


@pytest.mark.parametrize("amp", ["off", "on", "auto"])
def test_log_names_the_precision(amp: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train(TrainConfig("squeezenet1_1", data="digits", input_size=8, train_limit=32, val_limit=20, batch_size=32,
                      epochs=1, threads=1, progress=False, amp=amp, output=str(tmp_path / amp)))
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("training "))
    expected = {"off": "precision fp32 (--amp off)", "on": "precision bf16 autocast (--amp on)",
                "auto": "precision bf16 autocast (auto:" if cpu_bf16_fast() else "precision fp32 (auto:"}[amp]
    assert expected in line


def _cifar_like_zip(root: Path) -> Path:
    """A tiny cifar10:DIR with 32x32 RGB JPEGs (plus one grey image, which takes the PIL path)."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        with zipfile.ZipFile(root / f"cifar10_{split}_jpeg.zip", "w") as archive:
            for c in ("cat", "dog"):
                for k in range(6):
                    image = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
                    if k == 5:
                        image = image.convert("L")
                    path = root / "tmp.jpg"
                    image.save(path)
                    archive.write(path, f"{split}/{c}/{k}.jpg")
    return root


@pytest.mark.parametrize(("source", "size", "in_chans"), [("cifar", 32, None), ("digits", 8, None),
                                                          ("digits", 8, 3), ("digits", 16, None)])
def test_fast_augmentation_matches_torchvision(source: str, size: int, in_chans: int | None, tmp_path: Path) -> None:
    """Each sample's tensor equals the PIL/torchvision path's under the same seed, and the zip cache changes nothing."""
    data = f"cifar10:{_cifar_like_zip(tmp_path)}" if source == "cifar" else "digits"
    bundle = build_datasets(data, size, in_chans=in_chans, train_limit=40, val_limit=10)
    for dataset in (bundle.train, bundle.val):
        for i in range(len(dataset)):
            for seed in (i, 7 * i + 3):
                torch.manual_seed(seed)
                expected = dataset.transform._pil(dataset.read(i))
                state = torch.get_rng_state()
                assert torch.equal(dataset[(i, seed)][0], expected)
                assert torch.equal(dataset[(i, seed)][0], expected)  # second read: from the decode cache
                assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched

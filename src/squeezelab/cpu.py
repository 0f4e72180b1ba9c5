"""What the CPU can do: its x86 feature flags and whether PyTorch may use its BF16 instructions.

Shared by the stages that pick kernels by CPU (INT8 compression, mixed-precision training) and by the
benchmarks' machine records.
"""

from __future__ import annotations

import ctypes
import os
from typing import Optional

import torch

#: Flags that give native BF16 arithmetic (AVX512-BF16 dot products, AMX tiles).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: Flags that give 8-bit dot products (AVX512-VNNI, AVX-VNNI, AMX): what makes INT8 inference fast.
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
#: The flags every benchmark records: the vector width and what decides INT8 and BF16 speed.
REPORTED_FLAGS = ("avx2", "avx512f", *VNNI_FLAGS, *BF16_FLAGS, "amx_tile")
#: ``ONEDNN_MAX_CPU_ISA`` values below AVX512_CORE_BF16 (oneDNN then emulates BF16).
ONEDNN_BELOW_BF16 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"})


def _cpuinfo_field(field: str, cpuinfo: str = "/proc/cpuinfo") -> Optional[str]:
    """The value of the first ``field`` line of ``cpuinfo`` (None where there is no such file or line)."""
    try:
        with open(cpuinfo, encoding="utf-8") as handle:
            return next((line.split(":", 1)[1].strip() for line in handle if line.startswith(field)), None)
    except OSError:
        return None


def cpu_flag_set(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The flags of the first CPU listed in ``cpuinfo`` (empty where there is no such file, e.g. not Linux/x86)."""
    return frozenset((_cpuinfo_field("flags", cpuinfo) or "").split())


def cpu_model_name() -> Optional[str]:
    """The CPU's model name from ``/proc/cpuinfo`` (e.g. ``AMD EPYC 9R14``), None where there is none."""
    return _cpuinfo_field("model name")


def cpu_flags(names: tuple[str, ...] = REPORTED_FLAGS) -> dict[str, bool]:
    """Whether this CPU has each of ``names`` (all False where ``/proc/cpuinfo`` is missing)."""
    flags = cpu_flag_set()
    return {name: name in flags for name in names}


def has_vnni() -> bool:
    """True when this CPU has 8-bit dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX)."""
    return any(cpu_flags(VNNI_FLAGS).values())


def torch_bf16_native() -> bool:
    """True when PyTorch runs BF16 with native instructions: oneDNN's BF16 convolutions and AVX-512 ATen kernels.

    False when the CPU or PyTorch build lacks them, when ``ONEDNN_MAX_CPU_ISA`` (or ``DNNL_MAX_CPU_ISA``)
    caps oneDNN below AVX512_CORE_BF16, or when ``ATEN_CPU_CAPABILITY`` caps ATen below AVX-512: BF16 is
    then emulated and slower than FP32.
    """
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    if cap in ONEDNN_BELOW_BF16 or not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        return False
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cpu_bf16_fast(flags: frozenset[str] | None = None, native: bool | None = None) -> bool:
    """Whether BF16 autocast should speed up training on this CPU: a BF16 flag and uncapped oneDNN kernels."""
    flags = cpu_flag_set() if flags is None else flags
    native = torch_bf16_native() if native is None else native
    return native and any(flag in flags for flag in BF16_FLAGS)


#: glibc ``mallopt`` parameters (malloc.h): M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
#: Blocks up to this size are kept by the allocator when freed (docs/training.md, "Throughput").
ALLOCATOR_KEEP_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Make glibc's malloc reuse freed memory instead of returning large blocks to the kernel; True if applied.

    By default glibc serves blocks above a threshold of at most 32 MiB with fresh ``mmap`` pages and
    unmaps them on free, so a training step that allocates and frees the same activations over and over
    pays a page fault and the kernel's zeroing of every page, every step. Raising the mmap and trim
    thresholds keeps those blocks in the heap: on a 2-core CPU squeezenet1_1's 32 px training step ran
    1.25x faster (docs/training.md, "Throughput"). The process then keeps its peak memory. A no-op
    (False) where the C library has no ``mallopt`` (not glibc).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    return all(mallopt(option, value) == 1 for option, value in (
        (_M_MMAP_THRESHOLD, ALLOCATOR_KEEP_BYTES), (_M_TRIM_THRESHOLD, ALLOCATOR_KEEP_BYTES),
        (_M_TOP_PAD, 64 << 20)))


def available_memory(device: Optional[torch.device] = None) -> int:
    """Bytes free for tensors on ``device`` (default the CPU): CUDA's free memory, or the host's MemAvailable."""
    if device is not None and device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    kib = _meminfo_kib("MemAvailable")
    return kib * 1024 if kib is not None else os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _meminfo_kib(field: str) -> Optional[int]:
    """A ``/proc/meminfo`` field in KiB (None where there is no such file or field)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            return next((int(line.split()[1]) for line in handle if line.startswith(field + ":")), None)
    except (OSError, ValueError, IndexError):
        return None

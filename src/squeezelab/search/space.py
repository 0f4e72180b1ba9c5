"""The co-design search space: SqueezeNext architectures and systolic-array accelerators under an area budget.

Architecture (Gholami et al., SqueezeNext, CVPRW 2018, §6): blocks per stage (optionally with a fixed
total, as the paper moved SqNxt-23's 21 blocks between stages from v1 to v5), a width multiplier per
stage, the stem kernel (7x7 in v1, 5x5 in v5), the block layout (projection first, v5), the order of
the separable 3x1 / 1x3 pair, groups on the first 1x1 and the separable convs, and the squeeze ratio.
Every :class:`Architecture` is ``squeezelab.create_model(MODEL, **arch.model_kwargs)`` and the string
``arch.spec`` is what ``squeezelab simulate`` reads.

Hardware: a PE array of rows x cols, the dataflow (one for the network, or ``best`` per layer as the
Squeezelerator of Kwon et al., DAC 2018), the global-buffer (GLB) size and the DRAM bandwidth. Designs
compare at equal area: ``area = PEs + GLB KiB / KIB_PER_PE`` in PE equivalents (docs/codesign.md).
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field, fields
from typing import Any, Iterator, Optional, Protocol, Sequence

from ..errors import SqueezelabError
from ..hwsim import DATAFLOWS, AcceleratorConfig, get_preset
from ..models import format_model_spec, trace_model
from ..models.squeezenext import SEPARABLE_ORDERS

#: The zoo entry every architecture is built from; its keywords are overridden by the design's.
MODEL = "sqnxt23v5_w1"
#: SqNxt-23 has 21 SqueezeNext blocks (6+6+8+1 in v1, 2+4+14+1 in v5): the paper's moves keep this total.
SQNXT23_BLOCKS = 21
#: Width multipliers a stage may take (stage channels round(32, 64, 128, 256 x width)).
STAGE_WIDTHS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
#: Input size of the buildability check (:meth:`Architecture.problem`), with the small-input stem.
CHECK_SIZE = 32
#: Area of one PE (a 16-bit MAC with its 512 B register file and control) in KiB of global-buffer SRAM.
#: An assumption, not a measurement: Eyeriss (65 nm, 168 PEs, 108 KiB GLB) spends several times more area
#: on its PE array than on its GLB; docs/codesign.md shows how the results move with 2 and 8 instead.
KIB_PER_PE = 4.0


@dataclass(frozen=True)
class Architecture:
    """One SqueezeNext design: the design keywords of :class:`~squeezelab.models.SqueezeNext`."""

    depths: tuple[int, int, int, int]
    widths: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    stem_kernel: int = 5
    projection_first: bool = True
    separable_order: str = "alternate"
    groups: int = 1
    squeeze_ratio: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "widths", tuple(float(w) for w in self.widths))

    @property
    def model_kwargs(self) -> dict[str, Any]:
        """The keywords of ``create_model(MODEL, **model_kwargs)`` (one width when all four stages share it)."""
        widths = self.widths[0] if len(set(self.widths)) == 1 else list(self.widths)
        return dict(depths=list(self.depths), width=widths, stem_kernel=self.stem_kernel,
                    projection_first=self.projection_first, separable_order=self.separable_order,
                    groups=self.groups, squeeze_ratio=self.squeeze_ratio)

    @property
    def spec(self) -> str:
        """``MODEL:KEY=VALUE,...``, the name ``squeezelab simulate`` and ``resolve_model`` read."""
        return format_model_spec(MODEL, self.model_kwargs)

    @property
    def blocks(self) -> int:
        return sum(self.depths)

    def problem(self) -> Optional[str]:
        """Why SqueezeNext cannot build this design (e.g. channels that ``groups`` does not divide), or None.

        The constructor is the judge: the design is traced (without being built) at a small input size.
        """
        try:
            trace_model(MODEL, CHECK_SIZE, small_input=True, **self.model_kwargs)
        except SqueezelabError as exc:
            return str(exc)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Architecture":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> "Architecture":
        """The design of ``create_model(MODEL, **kwargs)`` (``model_kwargs``' inverse; missing keys take v5's)."""
        kwargs = dict(kwargs)
        width = kwargs.pop("width", 1.0)
        widths = tuple(width) if isinstance(width, (list, tuple)) else (width,) * 4
        unknown = set(kwargs) - {f.name for f in fields(cls)}
        if unknown:
            raise SqueezelabError(f"not a SqueezeNext design keyword: {', '.join(sorted(unknown))}")
        return cls(widths=widths, **{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()})


def _squeezenext(depths: Sequence[int], width: float = 1.0, stem_kernel: int = 5,
                 projection_first: bool = True) -> Architecture:
    return Architecture(tuple(depths), (width,) * 4, stem_kernel, projection_first)  # type: ignore[arg-type]


#: The paper's designs (§6). v1 and v5 are the official prototxts (shared/reference/hwsim.md T1); v2-v4 are
#: recalled, not verified (T2: [4,8,8,1], [2,10,8,1], [2,4,14,1] with the 7x7 stem), and keep v1's block
#: layout: v5 is the first prototxt with projection-first blocks.
REFERENCES: dict[str, Architecture] = {
    "1.0-SqNxt-23": _squeezenext((6, 6, 8, 1), stem_kernel=7, projection_first=False),
    "1.0-SqNxt-23v2": _squeezenext((4, 8, 8, 1), stem_kernel=7, projection_first=False),
    "1.0-SqNxt-23v3": _squeezenext((2, 10, 8, 1), stem_kernel=7, projection_first=False),
    "1.0-SqNxt-23v4": _squeezenext((2, 4, 14, 1), stem_kernel=7, projection_first=False),
    "1.0-SqNxt-23v5": _squeezenext((2, 4, 14, 1)),
    "1.5-SqNxt-23": _squeezenext((6, 6, 8, 1), 1.5, stem_kernel=7, projection_first=False),
    "1.5-SqNxt-23v5": _squeezenext((2, 4, 14, 1), 1.5),
    "2.0-SqNxt-23": _squeezenext((6, 6, 8, 1), 2.0, stem_kernel=7, projection_first=False),
    "2.0-SqNxt-23v5": _squeezenext((2, 4, 14, 1), 2.0),
}
#: The paper's sequence of hand-made moves, v1 to v5 (§6).
PAPER_SEQUENCE = ("1.0-SqNxt-23", "1.0-SqNxt-23v2", "1.0-SqNxt-23v3", "1.0-SqNxt-23v4", "1.0-SqNxt-23v5")
#: The reference a found design has to beat (the paper's final design, section 6).
V5_LABEL = "1.0-SqNxt-23v5"
V5 = REFERENCES[V5_LABEL]


class Suggester(Protocol):
    """What a space needs from an optimizer's trial (``optuna.Trial`` has both)."""

    def suggest_int(self, name: str, low: int, high: int) -> int: ...

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


class RandomSuggester:
    """A :class:`Suggester` drawing uniformly from a seeded ``random.Random`` (random sampling of a space)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def suggest_int(self, name: str, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self.rng.choice(list(choices))


def _pick(trial: Suggester, name: str, choices: tuple) -> Any:
    """A choice; a single choice is fixed and not suggested (the study's parameters are only what varies)."""
    return choices[0] if len(choices) == 1 else trial.suggest_categorical(name, choices)


def depth_splits(total: int) -> list[tuple[int, int, int, int]]:
    """Every way to put ``total`` blocks in four stages of at least one (C(total - 1, 3) of them)."""
    return [(a, b - a, c - b, total - c) for a, b, c in itertools.combinations(range(1, total), 3)]


def split_from_sorted(values: Sequence[int], total: int) -> tuple[int, int, int, int]:
    """The depth split of three values in 1..total-3 (any order): sorted a <= b <= c become the cuts
    a < b+1 < c+2, a bijection from multisets onto :func:`depth_splits` (so an optimizer's three integer
    parameters never make an invalid split)."""
    a, b, c = sorted(values)
    if a < 1 or c > total - 3:
        raise SqueezelabError(f"split values {tuple(values)} must lie in 1..{total - 3}")
    cuts = (a, b + 1, c + 2)
    return cuts[0], cuts[1] - cuts[0], cuts[2] - cuts[1], total - cuts[2]


@dataclass(frozen=True)
class ArchSpace:
    """Which architectures a search may pick; a tuple of one value fixes that choice.

    ``total_blocks`` fixes the sum of the four depths (the paper's moves); otherwise each stage takes
    ``1..max_depth`` blocks. ``widths`` are per-stage multipliers (each stage picks its own).
    """

    total_blocks: Optional[int] = None
    max_depth: int = 8
    widths: tuple[float, ...] = STAGE_WIDTHS
    stem_kernels: tuple[int, ...] = (5, 7)
    projection_first: tuple[bool, ...] = (True, False)
    separable_orders: tuple[str, ...] = SEPARABLE_ORDERS
    groups: tuple[int, ...] = (1, 2)
    squeeze_ratios: tuple[float, ...] = (0.25, 0.5)

    def __post_init__(self) -> None:
        if self.total_blocks is not None and self.total_blocks < 4:
            raise SqueezelabError(f"total_blocks={self.total_blocks} must be at least 4 (one block per stage)")
        if self.max_depth < 1:
            raise SqueezelabError(f"max_depth={self.max_depth} must be at least 1")
        bad = [o for o in self.separable_orders if o not in SEPARABLE_ORDERS]
        if bad or not all((self.widths, self.stem_kernels, self.projection_first, self.separable_orders,
                            self.groups, self.squeeze_ratios)):
            raise SqueezelabError(f"every architecture choice needs at least one value; separable orders are "
                                  f"{', '.join(SEPARABLE_ORDERS)}")

    def depth_choices(self) -> list[tuple[int, int, int, int]]:
        if self.total_blocks is not None:
            return depth_splits(self.total_blocks)
        return list(itertools.product(range(1, self.max_depth + 1), repeat=4))  # type: ignore[arg-type]

    def size(self) -> int:
        return (len(self.depth_choices()) * len(self.widths) ** 4 * len(self.stem_kernels) * len(self.projection_first)
                * len(self.separable_orders) * len(self.groups) * len(self.squeeze_ratios))

    def __iter__(self) -> Iterator[Architecture]:
        """Every architecture of the space (for exact enumeration of small spaces)."""
        for depths, widths, stem, first, order, groups, ratio in itertools.product(
                self.depth_choices(), itertools.product(self.widths, repeat=4), self.stem_kernels,
                self.projection_first, self.separable_orders, self.groups, self.squeeze_ratios):
            yield Architecture(depths, widths, stem, first, order, groups, ratio)

    def suggest(self, trial: Suggester) -> Architecture:
        """An architecture from an optimizer's trial (parameter names ``split1..3`` or ``depth1..4``, ...)."""
        if self.total_blocks is not None:
            top = self.total_blocks - 3
            depths = split_from_sorted([trial.suggest_int(f"split{i}", 1, top) for i in (1, 2, 3)], self.total_blocks)
        else:
            depths = tuple(trial.suggest_int(f"depth{i}", 1, self.max_depth) for i in (1, 2, 3, 4))
        widths = tuple(_pick(trial, f"width{i}", self.widths) for i in (1, 2, 3, 4))
        return Architecture(depths, widths, _pick(trial, "stem_kernel", self.stem_kernels),  # type: ignore[arg-type]
                            _pick(trial, "projection_first", self.projection_first),
                            _pick(trial, "separable_order", self.separable_orders), _pick(trial, "groups", self.groups),
                            _pick(trial, "squeeze_ratio", self.squeeze_ratios))

    def contains(self, arch: Architecture) -> bool:
        depths_ok = (sum(arch.depths) == self.total_blocks if self.total_blocks is not None
                     else max(arch.depths) <= self.max_depth) and min(arch.depths) >= 1
        return (depths_ok and all(w in self.widths for w in arch.widths) and arch.stem_kernel in self.stem_kernels
                and arch.projection_first in self.projection_first and arch.separable_order in self.separable_orders
                and arch.groups in self.groups and arch.squeeze_ratio in self.squeeze_ratios)


@dataclass(frozen=True)
class Hardware:
    """One accelerator of the space: array shape, dataflow, GLB size and DRAM bandwidth (None: unlimited)."""

    array_rows: int
    array_cols: int
    glb_kib: int
    dataflow: str
    dram_bw: Optional[float] = None

    @property
    def pes(self) -> int:
        return self.array_rows * self.array_cols

    def area(self, kib_per_pe: float = KIB_PER_PE) -> float:
        """PEs plus the GLB's area in PE equivalents (:data:`KIB_PER_PE`)."""
        return self.pes + self.glb_kib / kib_per_pe

    def config(self, base: AcceleratorConfig) -> AcceleratorConfig:
        """``base`` (energy costs, word size, RF, clock) with this array, dataflow, GLB and bandwidth."""
        return base.replace(array_rows=self.array_rows, array_cols=self.array_cols, dataflow=self.dataflow,
                            glb_bytes=self.glb_kib * 1024, dram_bw_bytes_per_cycle=self.dram_bw,
                            name=f"{self.array_rows}x{self.array_cols} {self.dataflow} {self.glb_kib} KiB")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def of(cls, config: AcceleratorConfig) -> "Hardware":
        if config.glb_bytes % 1024:
            raise SqueezelabError(f"GLB of {config.glb_bytes} bytes is not a whole number of KiB")
        return cls(config.array_rows, config.array_cols, config.glb_bytes // 1024, config.dataflow,
                   config.dram_bw_bytes_per_cycle)


#: The accelerator of the paper's study as this project models it (docs/hwsim.md): 32x32, best dataflow per layer.
PAPER_ACCELERATOR = "squeezelerator"


@dataclass(frozen=True)
class HardwareSpace:
    """Which accelerators a search may pick, and the area budget they must fit.

    ``base`` is the preset that supplies what is not searched (energy costs, word size, RF, clock).
    ``area_budget`` defaults to the base preset's own area, so every design fits the paper's accelerator's area.
    """

    rows: tuple[int, ...] = (8, 16, 32, 64)
    cols: tuple[int, ...] = (8, 16, 32, 64)
    glb_kib: tuple[int, ...] = (64, 128, 256, 512)
    dataflows: tuple[str, ...] = ("ws", "os", "is", "best")
    dram_bw: tuple[Optional[float], ...] = (None,)
    base: str = PAPER_ACCELERATOR
    area_budget: Optional[float] = None
    kib_per_pe: float = KIB_PER_PE
    base_config: AcceleratorConfig = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_config", get_preset(self.base))
        bad = [d for d in self.dataflows if d not in DATAFLOWS]
        if bad or not all((self.rows, self.cols, self.glb_kib, self.dataflows, self.dram_bw)):
            raise SqueezelabError(f"every hardware choice needs at least one value; dataflows are {', '.join(DATAFLOWS)}")
        if min(self.rows + self.cols + self.glb_kib) < 1 or not self.kib_per_pe > 0:
            raise SqueezelabError("array sides, GLB sizes and kib_per_pe must be positive")

    @property
    def budget(self) -> float:
        """The area budget in PE equivalents."""
        if self.area_budget is not None:
            return self.area_budget
        return Hardware.of(self.base_config).area(self.kib_per_pe)

    def fits(self, hw: Hardware) -> bool:
        return hw.area(self.kib_per_pe) <= self.budget + 1e-9

    def __iter__(self) -> Iterator[Hardware]:
        """Every accelerator of the grid, whether or not it fits the budget."""
        for rows, cols, glb, df, bw in itertools.product(self.rows, self.cols, self.glb_kib, self.dataflows,
                                                         self.dram_bw):
            yield Hardware(rows, cols, glb, df, bw)

    def feasible(self) -> list[Hardware]:
        return [hw for hw in self if self.fits(hw)]

    def suggest(self, trial: Suggester) -> Hardware:
        return Hardware(_pick(trial, "array_rows", self.rows), _pick(trial, "array_cols", self.cols),
                        _pick(trial, "glb_kib", self.glb_kib), _pick(trial, "dataflow", self.dataflows),
                        _pick(trial, "dram_bw", self.dram_bw))

    def config(self, hw: Hardware) -> AcceleratorConfig:
        return hw.config(self.base_config)

    @property
    def paper(self) -> Hardware:
        """The base preset itself as a point of the space."""
        return Hardware.of(self.base_config)


@dataclass(frozen=True)
class SearchSpace:
    """Architectures x accelerators."""

    arch: ArchSpace
    hardware: HardwareSpace

    def size(self) -> int:
        return self.arch.size() * math.prod(len(c) for c in (self.hardware.rows, self.hardware.cols,
                                                              self.hardware.glb_kib, self.hardware.dataflows,
                                                              self.hardware.dram_bw))


def _v5_only(**changes: Any) -> ArchSpace:
    """An architecture space with every choice fixed at 1.0-SqNxt-23v5's, but ``changes``."""
    fixed = dict(widths=(1.0,), stem_kernels=(5,), projection_first=(True,), separable_orders=("alternate",),
                 groups=(1,), squeeze_ratios=(0.5,))
    return ArchSpace(**{**fixed, **changes})


_PAPER_HARDWARE = HardwareSpace(rows=(32,), cols=(32,), glb_kib=(128,), dataflows=("best",))
#: Named spaces for ``squeezelab search --space``.
SPACES: dict[str, SearchSpace] = {
    # The exact sub-space: every split of SqNxt-23's 21 blocks (1,140) at v5's other choices, x 64 arrays x 4 GLB
    # sizes x 4 dataflows, under the Squeezelerator's area.
    "depth21": SearchSpace(_v5_only(total_blocks=SQNXT23_BLOCKS), HardwareSpace()),
    # The paper's accelerator fixed; every architecture choice free.
    "arch": SearchSpace(ArchSpace(), _PAPER_HARDWARE),
    # The same with SqNxt-23's 21 blocks kept (the paper's moves): depth splits, widths and block variants.
    "arch21": SearchSpace(ArchSpace(total_blocks=SQNXT23_BLOCKS), _PAPER_HARDWARE),
    # Everything free (architecture x hardware).
    "joint": SearchSpace(ArchSpace(), HardwareSpace()),
    # The same keeping SqNxt-23's 21 blocks.
    "joint21": SearchSpace(ArchSpace(total_blocks=SQNXT23_BLOCKS), HardwareSpace()),
}


def get_space(name: str) -> SearchSpace:
    if name not in SPACES:
        raise SqueezelabError(f"unknown search space {name!r}; choose one of {', '.join(SPACES)}")
    return SPACES[name]

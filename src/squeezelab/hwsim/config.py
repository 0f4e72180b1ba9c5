"""Accelerator configuration, energy-cost presets and named accelerator presets.

Defaults and presets follow ``shared/reference/hwsim.md`` §3.1 (config) and T4
(energy costs); every cost is per word access (per MAC for ``mac``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from ..errors import SqueezelabError
from ..extras import require

DATAFLOWS = ("ws", "os", "is", "best")
PSUM_SPILL = ("glb", "dram")
#: The least DRAM bandwidth accepted, in bytes per cycle (an 8-bit bus at 1/1024 of the clock); below it cycle
#: counts leave any real accelerator's range and overflow float64 for large inputs.
MIN_DRAM_BW = 1 / 1024
#: The clocks accepted: 1 kHz to 100 GHz.
CLOCK_RANGE_HZ = (1e3, 1e11)


def _is_number(value: Any) -> bool:
    """An int or float that is not a bool (YAML's ``yes`` is not a clock)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class EnergyCosts:
    """Energy per action: one MAC, one RF / inter-PE / global-buffer / DRAM word access.

    ``unit`` is ``"xMAC"`` for costs normalised to a MAC, or ``"pJ"``. Static energy is
    ``static_per_cycle`` (in ``unit``) per total cycle plus ``static_mw`` (pJ units only)
    times the run time.
    """

    mac: float
    rf: float
    noc: float
    glb: float
    dram: float
    unit: str = "xMAC"
    static_per_cycle: float = 0.0
    static_mw: float = 0.0
    source: str = "user"

    def __post_init__(self) -> None:
        for name in ("mac", "rf", "noc", "glb", "dram", "static_per_cycle", "static_mw"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value < math.inf:
                raise SqueezelabError(f"energy cost {name}={value!r} must be a finite number >= 0")
        if self.unit not in ("xMAC", "pJ"):
            raise SqueezelabError(f"energy unit {self.unit!r} must be 'xMAC' or 'pJ'")
        if self.static_mw and self.unit != "pJ":
            raise SqueezelabError("static_mw needs unit 'pJ' (a power cannot be normalised to a MAC)")


#: hwsim.md T4: nn_dataflow's reproductions of the Eyeriss and TETRIS papers (S10, S11).
ENERGY_PRESETS: dict[str, EnergyCosts] = {
    "eyeriss_isca16_norm": EnergyCosts(
        mac=1, rf=1, noc=2, glb=6, dram=200, unit="xMAC",
        source="Eyeriss ISCA'16 normalised costs (nn_dataflow test_eyeriss_isca16: mem_hier=(200,6,2,1))"),
    "eyeriss_jssc17_pJ": EnergyCosts(
        mac=2, rf=1, noc=4, glb=15, dram=460, unit="pJ", static_mw=30,
        source="Eyeriss JSSC'17, 16-bit, 30 mW static (nn_dataflow test_eyeriss_isscc16)"),
    "tetris_L1_pJ": EnergyCosts(
        mac=2, rf=1, noc=4, glb=28, dram=240, unit="pJ", static_per_cycle=320,
        source="TETRIS ASPLOS'17 L1, 16-bit, 320 pJ/cycle static (nn_dataflow test_eyeriss_asplos17)"),
}


@dataclass(frozen=True)
class AcceleratorConfig:
    """A systolic PE array with a global buffer (GLB) and DRAM; hwsim.md §3.1.

    ``dram_bw_bytes_per_cycle=None`` means unlimited bandwidth (SCALE-Sim's CALC mode:
    no stalls). ``energy`` is a preset name from :data:`ENERGY_PRESETS` or an
    :class:`EnergyCosts`. ``rf_per_mac`` / ``noc_per_mac`` override the per-dataflow
    RF and inter-PE access counts of §3.5.
    """

    array_rows: int = 16
    array_cols: int = 16
    dataflow: str = "ws"
    rf_bytes_per_pe: int = 512
    glb_bytes: int = 128 * 1024
    double_buffered: bool = True
    word_bytes: int = 2
    dram_bw_bytes_per_cycle: Optional[float] = None
    clock_hz: float = 200e6
    energy: Union[str, EnergyCosts] = "eyeriss_isca16_norm"
    psum_spill: str = "glb"
    keep_activations_on_chip: bool = False
    rf_per_mac: Optional[float] = None
    noc_per_mac: Optional[float] = None
    name: str = "custom"

    def __post_init__(self) -> None:
        for key in ("array_rows", "array_cols", "rf_bytes_per_pe", "glb_bytes", "word_bytes"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SqueezelabError(f"accelerator {key}={value!r} must be a positive integer")
        if self.dataflow not in DATAFLOWS:
            raise SqueezelabError(f"dataflow {self.dataflow!r} is not one of {', '.join(DATAFLOWS)}")
        if self.psum_spill not in PSUM_SPILL:
            raise SqueezelabError(f"psum_spill {self.psum_spill!r} is not one of {', '.join(PSUM_SPILL)}")
        bw = self.dram_bw_bytes_per_cycle
        if bw is not None and (not _is_number(bw) or not MIN_DRAM_BW <= bw < math.inf):
            raise SqueezelabError(f"dram_bw_bytes_per_cycle={bw!r} must be a finite number of bytes per cycle >= "
                                  f"1/{round(1 / MIN_DRAM_BW)}, or null (no --dram-bw) for unlimited")
        if not _is_number(self.clock_hz) or not CLOCK_RANGE_HZ[0] <= self.clock_hz <= CLOCK_RANGE_HZ[1]:
            raise SqueezelabError(f"clock_hz={self.clock_hz!r} must be a clock between {CLOCK_RANGE_HZ[0]:g} and "
                                  f"{CLOCK_RANGE_HZ[1]:g} Hz")
        if self.rf_bytes_per_pe < 2 * self.word_bytes:
            raise SqueezelabError(f"rf_bytes_per_pe={self.rf_bytes_per_pe} cannot hold a stationary operand "
                                  f"and a partial sum of {self.word_bytes}-byte words; use at least "
                                  f"{2 * self.word_bytes}")
        for key in ("rf_per_mac", "noc_per_mac"):
            value = getattr(self, key)
            if value is not None and (not _is_number(value) or not 0 <= value < math.inf):
                raise SqueezelabError(f"{key}={value!r} must be a finite number >= 0")
        if isinstance(self.energy, str):
            if self.energy not in ENERGY_PRESETS:
                raise SqueezelabError(f"unknown energy preset {self.energy!r}; choose one of "
                                      f"{', '.join(ENERGY_PRESETS)} or give costs as a mapping")
        elif not isinstance(self.energy, EnergyCosts):
            raise SqueezelabError("energy must be a preset name or EnergyCosts")

    @property
    def costs(self) -> EnergyCosts:
        return ENERGY_PRESETS[self.energy] if isinstance(self.energy, str) else self.energy

    @property
    def operand_capacity_words(self) -> int:
        """Words of one operand's GLB share (1/3 of the GLB) that are active (half if double-buffered)."""
        share = self.glb_bytes // 3
        if self.double_buffered:
            share //= 2
        return share // self.word_bytes

    def replace(self, **changes: Any) -> "AcceleratorConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if isinstance(self.energy, EnergyCosts):
            data["energy"] = dataclasses.asdict(self.energy)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AcceleratorConfig":
        """Build from a mapping; ``preset: NAME`` starts from a named preset and overrides its fields."""
        if not isinstance(data, dict):
            raise SqueezelabError("an accelerator config must be a mapping of field: value")
        data = dict(data)
        base = get_preset(data.pop("preset")) if "preset" in data else cls()
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SqueezelabError(f"unknown accelerator config key(s) {', '.join(unknown)}; "
                                  f"valid keys: preset, {', '.join(sorted(known))}")
        energy = data.get("energy")
        if isinstance(energy, dict):
            efields = {f.name for f in dataclasses.fields(EnergyCosts)}
            bad = sorted(set(energy) - efields)
            if bad:
                raise SqueezelabError(f"unknown energy cost key(s) {', '.join(bad)}; valid: {', '.join(sorted(efields))}")
            try:
                data["energy"] = EnergyCosts(**energy)
            except TypeError as exc:
                raise SqueezelabError(f"energy costs need mac, rf, noc, glb and dram ({exc})") from None
        return base.replace(**data)

    def describe(self) -> str:
        bw = "unlimited" if self.dram_bw_bytes_per_cycle is None else f"{self.dram_bw_bytes_per_cycle:g} B/cycle"
        energy = self.energy if isinstance(self.energy, str) else "user costs"
        return (f"{self.array_rows}x{self.array_cols} {self.dataflow.upper()}, GLB {self.glb_bytes // 1024} KiB, "
                f"{8 * self.word_bytes}-bit words, DRAM {bw}, {self.clock_hz / 1e6:g} MHz, energy {energy}")


#: Named accelerators. ``default`` is the §3.1 proposal (16x16 WS, Eyeriss ISCA'16 setup).
PRESETS: dict[str, AcceleratorConfig] = {
    "default": AcceleratorConfig(name="default"),
    "eyeriss": AcceleratorConfig(
        name="eyeriss", array_rows=12, array_cols=14, glb_bytes=108 * 1024, energy="eyeriss_jssc17_pJ",
        rf_bytes_per_pe=522),
    "tetris": AcceleratorConfig(name="tetris", rf_bytes_per_pe=1024, glb_bytes=576 * 1024, energy="tetris_L1_pJ"),
    "squeezelerator": AcceleratorConfig(name="squeezelerator", array_rows=32, array_cols=32, dataflow="best"),
    "scalesim": AcceleratorConfig(
        name="scalesim", word_bytes=1, glb_bytes=3 * 64 * 1024, psum_spill="dram"),
}


def get_preset(name: str) -> AcceleratorConfig:
    if not isinstance(name, str) or name not in PRESETS:
        raise SqueezelabError(f"unknown accelerator preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def load_config(path: Union[str, Path]) -> AcceleratorConfig:
    """Read an accelerator config from a ``.yaml``/``.yml`` or ``.json`` file."""
    path = Path(path)
    if not path.is_file():
        raise SqueezelabError(f"accelerator config {path} does not exist or is not a file; give a .yaml or .json "
                              f"file or a preset name")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() in (".yaml", ".yml"):
            yaml = require("yaml", "YAML accelerator configs")

            data = yaml.safe_load(text)
        elif path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise SqueezelabError(f"accelerator config {path} must end in .yaml, .yml or .json")
    except UnicodeDecodeError as exc:
        raise SqueezelabError(f"cannot read {path}: it is not UTF-8 text (byte {exc.start}); save it as UTF-8"
                              ) from None
    except (ValueError, ImportError) as exc:
        raise SqueezelabError(f"cannot parse {path}: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise SqueezelabError(f"cannot parse {path}: it is nested too deeply to be an accelerator config") from None
    except OSError as exc:
        raise SqueezelabError(f"cannot read {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # yaml.YAMLError has no common base with ValueError
        if type(exc).__module__.startswith("yaml"):
            raise SqueezelabError(f"cannot parse {path}: {str(exc).splitlines()[0]}") from None
        raise
    return AcceleratorConfig.from_dict(data)


def resolve_config(config: Union[None, str, Path, dict, AcceleratorConfig]) -> AcceleratorConfig:
    """An :class:`AcceleratorConfig`, a preset name, a config file path or a mapping, as a config."""
    if config is None:
        return PRESETS["default"]
    if isinstance(config, AcceleratorConfig):
        return config
    if isinstance(config, dict):
        return AcceleratorConfig.from_dict(config)
    if isinstance(config, Path) or (isinstance(config, str) and (
            config.lower().endswith((".yaml", ".yml", ".json")) or "/" in config or Path(config).exists())):
        return load_config(config)
    if isinstance(config, str):
        return get_preset(config)
    raise SqueezelabError(f"config must be an AcceleratorConfig, a preset name or a file, not {type(config).__name__}")


def parse_array(text: str) -> tuple[int, int]:
    """``"16x16"`` or ``"16"`` as (rows, cols)."""
    parts = text.lower().split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        dims = []
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or min(dims) < 1:
        raise SqueezelabError(f"array size {text!r} must look like ROWSxCOLS, e.g. 16x16")
    return dims[0], dims[1]


__all__ = ["AcceleratorConfig", "DATAFLOWS", "ENERGY_PRESETS", "EnergyCosts", "PRESETS", "get_preset",
           "load_config", "parse_array", "resolve_config"]

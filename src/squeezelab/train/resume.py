"""What ``--resume`` takes from the saved run, and which given options conflict with it (``docs/training.md``)."""

from __future__ import annotations

from dataclasses import MISSING, fields, replace
from typing import Any, Collection

from ..data.datasets import parse_data_source
from ..errors import SqueezelabError
from ..models import get_model_entry
from .config import TrainConfig

#: Fields that say how this call runs, not what the run is: never restored from a saved run nor checked against it.
RUNTIME_FIELDS = frozenset({"output", "resume", "overwrite", "stop_after", "progress", "after_step"})
#: Where the run computes: restored from the saved run unless given, and a given value is not a conflict
#: (another thread count or device may change the last bits of the result).
ADJUSTABLE_FIELDS = frozenset({"device", "workers", "threads"})
#: What a field newer than a saved run meant when the run was made (runs before ``optimizer`` used SGD).
LEGACY_VALUES: dict[str, Any] = {"optimizer": "sgd"}


def explicit_fields(cfg: TrainConfig) -> set[str]:
    """The fields of ``cfg`` that differ from TrainConfig's defaults (``model`` always counts)."""
    given = {"model"}
    for f in fields(TrainConfig):
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        if default is not MISSING and getattr(cfg, f.name) != default:
            given.add(f.name)
    return given


def _same_setting(name: str, given: Any, saved: Any) -> bool:
    if name == "model":
        return get_model_entry(given).name == get_model_entry(saved).name
    if name == "data":  # another path to the same kind of data: the data fingerprint decides (engine)
        return parse_data_source(given).kind == parse_data_source(saved).kind
    return given == saved


def resume_config(cfg: TrainConfig, saved: dict[str, Any], explicit: Collection[str]) -> tuple[TrainConfig, int]:
    """The saved run's configuration with this call's runtime fields, and the run's planned epochs.

    Every field outside :data:`RUNTIME_FIELDS` comes from ``saved``, unless it is one of
    :data:`ADJUSTABLE_FIELDS` named in ``explicit``, or ``data`` given as another path to the same kind of
    source (a moved folder: training checks the run's data fingerprint). Any other field named in ``explicit``
    whose value differs from the saved one is an error, except a larger ``epochs``: that
    extends the run with a new schedule (the caller logs it).
    """
    restored: dict[str, Any] = {}
    for name in sorted(TrainConfig.field_names() - RUNTIME_FIELDS):
        if name in ADJUSTABLE_FIELDS and name in explicit:
            continue  # a given device/thread count: this call's value
        if name not in saved and name not in LEGACY_VALUES:
            continue  # a field newer than the run with no legacy meaning: this call's value
        given, value = getattr(cfg, name), saved.get(name, LEGACY_VALUES.get(name))
        if name in explicit and not _same_setting(name, given, value):
            if name == "epochs" and given > value:
                continue
            flag = "the model" if name == "model" else f"--{name.replace('_', '-')}"
            extend = " (a larger --epochs extends it)" if name == "epochs" else ""
            raise SqueezelabError(f"{flag} {given!r} conflicts with the resumed run's {value!r}: --resume takes "
                                  f"every setting from the run; drop the flag{extend}")
        restored[name] = given if name == "data" and name in explicit else value
    return replace(cfg, **restored), int(saved["epochs"])

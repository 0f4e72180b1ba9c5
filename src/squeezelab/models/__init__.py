"""The model zoo: SqueezeNet, SqueezeNext and the chapter's teaching networks, behind one registry."""

from . import squeezenet, squeezenext, textbook  # noqa: F401  (registers the models)
from ._base import ClassifierModel, SpatialOp, min_input_side
from .registry import ModelEntry, create_model, get_model_entry, list_models, resolve_name
from .squeezenet import Fire, SqueezeNet, fire_specs
from .squeezenext import SqueezeNext, SqueezeNextBlock

__all__ = [
    "ClassifierModel",
    "Fire",
    "ModelEntry",
    "SpatialOp",
    "SqueezeNet",
    "SqueezeNext",
    "SqueezeNextBlock",
    "create_model",
    "fire_specs",
    "get_model_entry",
    "list_models",
    "min_input_side",
    "resolve_name",
]

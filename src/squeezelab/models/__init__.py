"""The model zoo: SqueezeNet, SqueezeNext and the chapter's teaching networks, behind one registry.

Also the core's model tools: :func:`resolve_model` (zoo, baseline and torchvision names with
builder keywords) and :func:`trace` (every layer with its shapes and MACs; docs/architecture.md).
"""

from . import squeezenet, squeezenext, textbook  # noqa: F401  (registers the models)
from ._base import ClassifierModel, SpatialOp, min_input_side
from .registry import ModelEntry, create_model, get_model_entry, list_models, resolve_name
from .spec import ModelSpec, format_model_spec, parse_model_spec, parse_value, resolve_model
from .squeezenet import Fire, SqueezeNet, fire_specs
from .squeezenext import SqueezeNext, SqueezeNextBlock
from .tracing import LayerSpec, TracedModel, trace, trace_model

__all__ = [
    "ClassifierModel",
    "Fire",
    "LayerSpec",
    "ModelEntry",
    "ModelSpec",
    "SpatialOp",
    "SqueezeNet",
    "SqueezeNext",
    "SqueezeNextBlock",
    "TracedModel",
    "create_model",
    "fire_specs",
    "format_model_spec",
    "get_model_entry",
    "list_models",
    "min_input_side",
    "parse_model_spec",
    "parse_value",
    "resolve_model",
    "resolve_name",
    "trace",
    "trace_model",
]

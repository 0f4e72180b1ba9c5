"""squeezelab: the SqueezeNet family, faithful, trained, compressed, simulated and deployed.

The public API lives here; each pipeline stage is a subpackage (models, weights,
data, train, analysis, compress, hwsim, export, cli).
"""

from .analysis import profile
from .errors import SqueezelabError
from .hwsim import simulate
from .models import create_model, get_model_entry, list_models
from .export.optimize import optimize
from .inference import evaluate, predict
from .train import train

__version__ = "0.1.0"

__all__ = ["SqueezelabError", "__version__", "create_model", "evaluate", "get_model_entry", "list_models", "optimize", "predict", "profile", "simulate", "train"]

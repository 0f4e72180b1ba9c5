"""squeezelab: the SqueezeNet family, faithful, trained, compressed, simulated and deployed.

The public API lives here; each pipeline stage is a subpackage (models, weights,
data, train, analysis, compress, hwsim, export, cli).
"""

from .errors import SqueezelabError
from .models import create_model, get_model_entry, list_models

__version__ = "0.1.0"

__all__ = ["SqueezelabError", "__version__", "create_model", "get_model_entry", "list_models"]

"""Fold eval-mode BatchNorm into the convolution before it.

A BatchNorm after a convolution is an affine map per output channel, so in
eval mode it folds into the convolution's weight and bias (Ioffe & Szegedy
2015, section 3.1: the inference-time transform is linear): W' = W * g / s,
b' = (b - mu) * g / s + beta with s = sqrt(var + eps). The graph is found
with ``torch.fx`` over ``forward`` (the models' input check is skipped while
fx traces), so a fold happens wherever a Conv2d's only user is a
BatchNorm2d: SqueezeNext's 111 conv-BN pairs, the textbook Fire's squeeze.
A BatchNorm after a pooling layer (the textbook stem) stays as it is.
"""

from __future__ import annotations

import copy

from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..errors import SqueezelabError


def trace(model: nn.Module) -> fx.GraphModule:
    """fx-trace a module's forward (a zoo model's input check steps aside while fx traces it)."""
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # fx raises TraceError, TypeError, ... on data-dependent control flow
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SqueezelabError(f"cannot trace {type(model).__name__} to fold BatchNorm: {first}; "
                              "use optimize(..., backend='onnxruntime') or pass a model without data-dependent "
                              "control flow") from None


def fold_batchnorm(model: nn.Module) -> fx.GraphModule:
    """A copy of ``model`` (eval mode) as an fx GraphModule with every Conv2d -> BatchNorm2d pair folded.

    The result has no input check and returns the same logits (to float rounding,
    about 1e-6 relative). The number of folds is stored as ``folded_batchnorms``; the
    model's ``pretrained_cfg``, ``in_chans``, ``num_classes``, ``min_input_size`` and ``model_name`` are copied over.
    """
    module = copy.deepcopy(model).eval()
    graph_module = trace(module)
    modules = dict(graph_module.named_modules())
    folds = 0
    for node in list(graph_module.graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        source = node.args[0]
        if not (isinstance(source, fx.Node) and source.op == "call_module"
                and isinstance(modules.get(source.target), nn.Conv2d) and len(source.users) == 1):
            continue
        bn = modules[node.target]
        if not bn.track_running_stats or bn.running_mean is None:
            continue
        conv = fuse_conv_bn_eval(modules[source.target], bn)
        parent, _, name = source.target.rpartition(".")
        setattr(graph_module.get_submodule(parent) if parent else graph_module, name, conv)
        modules[source.target] = conv
        node.replace_all_uses_with(source)
        graph_module.graph.erase_node(node)
        folds += 1
    graph_module.graph.lint()
    graph_module.delete_all_unused_submodules()
    graph_module.recompile()
    graph_module.folded_batchnorms = folds
    for attribute in ("pretrained_cfg", "in_chans", "num_classes", "min_input_size", "model_name"):
        if hasattr(model, attribute):
            setattr(graph_module, attribute, getattr(model, attribute))
    return graph_module

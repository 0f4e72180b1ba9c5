"""Peak activation memory of batch-1 inference: computed from the graph, and measured.

:func:`peak_activation_bytes` is the figure ``squeezelab profile`` reports. The
model is traced with ``torch.fx`` and run once; the input image is live for the
whole run (the caller holds it), every other node's output is live from the
moment it is computed until its last consumer has run, and views and in-place
ops (``ReLU(inplace=True)``, ``flatten``) share their input's storage. The peak
is the largest sum of live storages. Weights are not activations and are not
counted. This is what a runtime that frees each tensor after its last use needs.

:func:`measure_peak_activation_bytes` is the independent check: it runs a model
under a ``TorchDispatchMode`` that sees every tensor each ATen op returns, keeps
a live-storage table updated by weak-reference finalizers, and reports the
largest total of floating-point storages. By default it runs the ``torch.fx``
code of the model, which drops each value after its last use; with
``traced=False`` it runs the module eagerly, where Python references keep some
tensors longer (``nn.Sequential`` holds a block's input until the block
returns), so that figure is higher. Integer tensors (the indices PyTorch's CPU
max-pool computes) are bookkeeping, not activations, and are not counted.
docs/analysis.md lists both figures.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import torch
import torch.fx
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from ..models.tracing import InputSize, input_channels, input_hw


def _storage(t: torch.Tensor) -> tuple[int, int]:
    storage = t.untyped_storage()
    return storage.data_ptr(), storage.nbytes()


def _input(model: nn.Module, input_size: InputSize) -> torch.Tensor:
    height, width = input_hw(input_size)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return torch.zeros(1, input_channels(model), height, width, device=device)


def _root(t: torch.Tensor) -> torch.Tensor:
    """The tensor owning ``t``'s memory: its base for a view, itself otherwise."""
    return t._base if t._base is not None else t


class _LivenessInterpreter(torch.fx.Interpreter):
    """Runs the graph, recording for each node the tensors (by owner) its output lives in.

    Every output is kept alive until the run ends, so owners are never confused. Owners are
    compared by identity (in-place ops return their input, views keep a ``_base``), which also
    works on the meta device.
    """

    def __init__(self, gm: torch.fx.GraphModule) -> None:
        super().__init__(gm)
        self.owners: dict[torch.fx.Node, list[torch.Tensor]] = {}

    def run_node(self, n: torch.fx.Node) -> Any:
        out = super().run_node(n)
        items = out if isinstance(out, (tuple, list)) else (out,)
        self.owners[n] = [_root(t) for t in items if isinstance(t, torch.Tensor)]
        return out


def peak_activation_bytes(model: nn.Module, input_size: InputSize = 224) -> int:
    """Peak bytes of live activations for one image (graph liveness, see the module docstring)."""
    gm = torch.fx.symbolic_trace(model)
    interp = _LivenessInterpreter(gm)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            interp.run(_input(model, input_size))
    finally:
        model.train(was_training)
    weights = {id(_root(t)) for t in (*model.parameters(), *model.buffers())}
    nodes = list(gm.graph.nodes)
    # An owner is released after the last node that reads or writes any tensor living in it.
    last_use: dict[int, int] = {}
    size: dict[int, int] = {}
    for i, node in enumerate(nodes):
        for owner in interp.owners.get(node, []):
            if id(owner) in weights:
                continue
            size.setdefault(id(owner), owner.untyped_storage().nbytes())
            last_use[id(owner)] = i
        for arg in node.all_input_nodes:
            for owner in interp.owners.get(arg, []):
                if id(owner) in size:
                    last_use[id(owner)] = max(last_use[id(owner)], i)
    last_use[id(interp.owners[nodes[0]][0])] = len(nodes)  # the caller holds the input image
    live: set[int] = set()
    peak = 0
    for i, node in enumerate(nodes):
        live |= {id(o) for o in interp.owners.get(node, []) if id(o) in size}
        peak = max(peak, sum(size[k] for k in live))
        live -= {k for k in live if last_use[k] == i}
    return peak


class _LiveTensorCounter(TorchDispatchMode):
    """Counts bytes of live tensor storages created by ATen ops (plus registered ones)."""

    def __init__(self, ignore: set[int]) -> None:
        super().__init__()
        self.ignore = ignore
        self.refs: dict[int, int] = {}
        self.sizes: dict[int, int] = {}
        self.live = 0
        self.peak = 0

    def track(self, t: torch.Tensor) -> None:
        ptr, nbytes = _storage(t)
        if ptr in self.ignore or nbytes == 0 or not t.is_floating_point():
            return
        if ptr not in self.refs:
            self.refs[ptr] = 0
            self.sizes[ptr] = nbytes
            self.live += nbytes
            self.peak = max(self.peak, self.live)
        self.refs[ptr] += 1
        weakref.finalize(t, self._release, ptr)

    def _release(self, ptr: int) -> None:
        self.refs[ptr] -= 1
        if self.refs[ptr] == 0:
            del self.refs[ptr]
            self.live -= self.sizes.pop(ptr)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.track(t)
        return out


def measure_peak_activation_bytes(model: nn.Module, input_size: InputSize = 224, traced: bool = True) -> int:
    """Peak bytes of live floating-point tensors while ``model`` runs on one image (a measurement).

    ``traced=True`` runs the model's ``torch.fx`` code; ``False`` runs the module eagerly.
    """
    weights = {_storage(t)[0] for t in (*model.parameters(), *model.buffers())}
    runner = torch.fx.symbolic_trace(model) if traced else model
    was_training = model.training
    model.eval()
    gc.collect()
    try:
        with torch.no_grad():
            counter = _LiveTensorCounter(weights)
            with counter:
                x = _input(model, input_size)
                out = runner(x)
            del x, out
    finally:
        model.train(was_training)
    return counter.peak

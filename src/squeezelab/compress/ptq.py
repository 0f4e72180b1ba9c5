"""What INT8 post-training quantization does before and after ONNX Runtime calibrates: three fp32 transforms.

ONNX Runtime's static quantization (:mod:`.int8`) rounds every weight to the nearest int8 step and clips
every activation to a calibrated uint8 range. On squeezenet1_1 that alone moves 17% of the top-1 answers
on upscaled CIFAR-10 images (docs/compression.md, "INT8 that keeps accuracy"). Three label-free steps,
on the BatchNorm-folded ``torch.fx`` graph, take most of that back without changing the graph ORT runs
(so the speed stays the same):

1. **Activation equalisation** (:func:`equalize_activations`; the cross-layer equalisation of Nagel et
   al., "Data-Free Quantization", ICCV 2019, Sec. 4.1, balanced on activation ranges as in SmoothQuant,
   Xiao et al. 2023): a ReLU network is positively homogeneous, so dividing output channel ``i`` of a
   convolution by ``s_i`` and multiplying the input channel ``i`` of every convolution it feeds by ``s_i``
   changes nothing in fp32. With ``s_i = (a_i / max_j a_j) ** alpha`` (``a_i`` the channel's activation
   range) small channels grow towards the tensor's largest, so one uint8 scale per tensor resolves them
   better; the per-output-channel int8 weights of the producer are unaffected by the scaling.
2. **Output-error rounding** (:func:`round_weights`, the AdaRound objective, Nagel et al., ICML 2020,
   solved greedily with error feedback as GPTQ does, Frantar et al., ICLR 2023): each weight row is
   rounded to the int8 grid one input column at a time, the rounding error of a column being compensated
   in the columns not yet rounded through the inverse of the layer's input second moment ``X X^T``, so the
   layer's *output* error on the calibration images is small rather than each weight's.
3. **Bias correction** (:func:`correct_biases`, Nagel et al. 2019 Sec. 4.2, empirical form): layer by
   layer in forward order, the mean per-channel output of the quantized model (simulated: the rounded
   weights and ORT's own uint8 activation ranges, :class:`FakeQuant`) is matched to the fp32 model's by
   adjusting the fp32 bias that ORT later quantizes to int32.

The simulation reproduces ORT's QDQ arithmetic: the activation ranges are read from the model ORT
calibrated and each is attached to the graph node whose values it quantizes (found by value, not name,
:func:`match_tensors`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Collection, Iterable, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

#: Modules and functions through which a ReLU network stays positively homogeneous channel by channel.
_PASS_MODULES = (nn.ReLU, nn.MaxPool2d, nn.Dropout)
_PASS_FUNCTIONS = (F.relu, torch.relu, F.max_pool2d, F.dropout)
#: Ridge added to the input second moment before it is inverted (GPTQ's "percdamp").
DAMPING = 0.01
#: Images per forward pass while collecting statistics.
CHUNK = 16


@dataclass(frozen=True)
class Affine:
    """One tensor's uint8 quantization: ``x ~ (clamp(round(x / scale) + zero_point, 0, 255) - zero_point) * scale``."""

    scale: float
    zero_point: int


class FakeQuant(nn.Module):
    """Rounds and clips its input to a uint8 grid (:class:`Affine`) while ``enabled``, else passes it through."""

    def __init__(self, affine: Affine) -> None:
        super().__init__()
        self.affine, self.enabled = affine, True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        scale, zero = self.affine.scale, self.affine.zero_point
        return (torch.clamp(torch.round(x / scale) + zero, 0, 255) - zero) * scale


def _conv(graph_module: fx.GraphModule, node: fx.Node) -> nn.Conv2d | None:
    if node.op == "call_module":
        module = graph_module.get_submodule(str(node.target))
        if isinstance(module, nn.Conv2d) and module.groups == 1:
            return module
    return None


def _consumers(graph_module: fx.GraphModule, node: fx.Node, offset: int,
               found: list[tuple[nn.Conv2d, int]]) -> bool:
    """Add the convolutions ``node`` feeds through positively homogeneous ops, with the channel offset of
    ``node``'s channels in their input; False if it also feeds anything else (then it cannot be scaled)."""
    for user in node.users:
        conv = _conv(graph_module, user)
        if conv is not None and user.args[0] is node:
            found.append((conv, offset))
        elif ((user.op == "call_module" and isinstance(graph_module.get_submodule(str(user.target)), _PASS_MODULES))
              or (user.op == "call_function" and user.target in _PASS_FUNCTIONS)):
            if not _consumers(graph_module, user, offset, found):
                return False
        elif user.op == "call_function" and user.target is torch.cat:
            parts = user.args[0]
            if user.kwargs.get("dim", user.args[1] if len(user.args) > 1 else 0) != 1 or list(parts).count(node) != 1:
                return False
            before = sum(part.meta["tensor_meta"].shape[1] for part in parts[:list(parts).index(node)])
            if not _consumers(graph_module, user, offset + before, found):
                return False
        else:
            return False
    return True


def _is_relu(graph_module: fx.GraphModule, node: fx.Node) -> bool:
    return ((node.op == "call_module" and isinstance(graph_module.get_submodule(str(node.target)), nn.ReLU))
            or (node.op == "call_function" and node.target in (F.relu, torch.relu)))


@dataclass
class EqualizationPair:
    """A convolution whose output reaches only ``consumers`` (convolutions, with the offset of its channels in
    their input) through ReLU, max-pool and channel concat. ``rectified``: its output goes straight into
    ReLUs, so the tensor ORT quantizes is the ReLU's (a Conv+Relu pair shares one uint8 range from 0);
    otherwise (a concat before the ReLU, as in textbook_squeezenet's expand layers) its raw output, negative
    values included, is quantized."""

    producer: nn.Conv2d
    consumers: list[tuple[nn.Conv2d, int]]
    rectified: bool


def equalization_pairs(graph_module: fx.GraphModule, example: torch.Tensor) -> list[EqualizationPair]:
    """Every convolution whose channels can be rescaled against the convolutions it feeds (:class:`EqualizationPair`)."""
    ShapeProp(graph_module).propagate(example)
    pairs = []
    for node in graph_module.graph.nodes:
        producer = _conv(graph_module, node)
        consumers: list[tuple[nn.Conv2d, int]] = []
        if producer is not None and _consumers(graph_module, node, 0, consumers) and consumers:
            pairs.append(EqualizationPair(producer, consumers,
                                          all(_is_relu(graph_module, user) for user in node.users)))
    return pairs


def _chunks(images: torch.Tensor) -> Iterator[torch.Tensor]:
    return (images[i:i + CHUNK] for i in range(0, len(images), CHUNK))


def _run_hooked(model: nn.Module, hooks: Iterable[tuple[nn.Module, Callable[..., None]]], images: torch.Tensor,
                pre: bool = False) -> None:
    """Run ``model`` on ``images``, :data:`CHUNK` at a time, with each (module, hook) registered as a forward
    hook (``pre``: a forward pre-hook) for that run only."""
    handles = [module.register_forward_pre_hook(hook) if pre else module.register_forward_hook(hook)
               for module, hook in hooks]
    try:
        for chunk in _chunks(images):
            model(chunk)
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def equalize_activations(graph_module: fx.GraphModule, images: torch.Tensor, alpha: float = 0.5,
                         percentile: float = 99.99) -> int:
    """Rescale channels between convolutions (module docstring, step 1) in place; returns the producers scaled.

    ``a_i`` is the ``percentile`` of channel ``i``'s magnitude, over ``images``, in the tensor ORT quantizes
    (ORT's calibration statistic): the ReLU output of a rectified pair, else the raw output. Measuring the
    ReLU output where ORT quantizes the raw one made a channel that is negative on every image look empty;
    scaled up 10^4 it then set the uint8 range of its whole tensor (relative logit error 0.55 instead of
    0.006 on a random textbook_squeezenet).
    """
    pairs = equalization_pairs(graph_module, images[:1])
    samples: dict[nn.Module, list[torch.Tensor]] = {pair.producer: [] for pair in pairs}
    rectified = {pair.producer: pair.rectified for pair in pairs}
    generator = torch.Generator().manual_seed(0)

    def record(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        quantized = torch.relu(output) if rectified[module] else output.abs()
        values = quantized.transpose(0, 1).reshape(output.shape[1], -1)
        keep = torch.randperm(values.shape[1], generator=generator)[:20_000]
        samples[module].append(values[:, keep])

    _run_hooked(graph_module, [(pair.producer, record) for pair in pairs], images)
    for pair in pairs:
        ranges = torch.quantile(torch.cat(samples[pair.producer], dim=1).double(), percentile / 100, dim=1)
        ranges = ranges.clamp_min(1e-8 * float(ranges.max()) + 1e-12)
        scale = (ranges / ranges.max()).pow(alpha).float()
        pair.producer.weight.div_(scale[:, None, None, None])
        if pair.producer.bias is not None:
            pair.producer.bias.div_(scale)
        for conv, offset in pair.consumers:
            conv.weight[:, offset:offset + len(scale)].mul_(scale[None, :, None, None])
    return len(pairs)


def _node_values(graph_module: fx.GraphModule, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every tensor an fx node produces on ``x``, by node name."""
    values: dict[str, torch.Tensor] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, node: fx.Node):  # noqa: ANN201 - fx's signature
            out = super().run_node(node)
            if isinstance(out, torch.Tensor):
                values[node.name] = out.detach()
            return out

    with torch.no_grad():
        Recorder(graph_module).run(x)
    return values


def match_tensors(graph_module: fx.GraphModule, onnx_values: Mapping[str, np.ndarray], x: torch.Tensor
                  ) -> dict[str, str]:
    """For each ONNX tensor (computed on ``x``), the fx node of ``graph_module`` with the same values.

    The exporter names tensors by op and scope, fx by call; values are what both agree on. The first
    node in graph order wins a tie (an in-place ReLU and its producer are matched by the ReLU's output).
    """
    nodes = _node_values(graph_module, x)
    matches: dict[str, str] = {}
    for onnx_name, array in onnx_values.items():
        target = torch.from_numpy(np.asarray(array, dtype=np.float32))
        scale = float(target.abs().max()) + 1e-6
        for node_name, value in nodes.items():
            if value.shape == target.shape and float((value.float() - target).abs().max()) <= 1e-4 * scale:
                matches[onnx_name] = node_name
                break
    return matches


def with_fake_quant(graph_module: fx.GraphModule, affines: Mapping[str, Affine]) -> fx.GraphModule:
    """A copy of ``graph_module`` with a :class:`FakeQuant` after each node named in ``affines``."""
    simulated = copy.deepcopy(graph_module)
    for node in list(simulated.graph.nodes):
        if node.name not in affines:
            continue
        name = f"fake_quant_{node.name}"
        simulated.add_submodule(name, FakeQuant(affines[node.name]))
        with simulated.graph.inserting_after(node):
            quantized = simulated.graph.call_module(name, (node,))
        node.replace_all_uses_with(quantized, delete_user_cb=lambda user, q=quantized: user is not q)
    simulated.graph.lint()
    simulated.recompile()
    return simulated


def weight_scales(weight: torch.Tensor) -> torch.Tensor:
    """ORT's symmetric per-output-channel int8 scale: ``max |w| / 127`` per row (1 for an all-zero row)."""
    absmax = weight.reshape(weight.shape[0], -1).abs().amax(dim=1)
    return torch.where(absmax > 0, absmax / 127, torch.ones_like(absmax))


def _columns(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """The (in_channels * kh * kw, positions) matrix the convolution multiplies by its weight rows."""
    cols = F.unfold(x, conv.kernel_size, dilation=conv.dilation, padding=conv.padding, stride=conv.stride)
    return cols.transpose(0, 1).reshape(cols.shape[1], -1)


def _input_moments(model: nn.Module, convs: Mapping[str, nn.Conv2d], images: torch.Tensor
                   ) -> dict[str, torch.Tensor]:
    """``X X^T`` (float64) of each convolution's unfolded inputs over ``images``: one forward pass for all."""
    moments: dict[str, torch.Tensor] = {}

    def hook(name: str, conv: nn.Conv2d) -> Callable[[nn.Module, tuple], None]:
        def record(_module: nn.Module, args: tuple) -> None:
            cols = _columns(conv, args[0]).double()
            moments[name] = moments[name] + cols @ cols.t() if name in moments else cols @ cols.t()
        return record

    _run_hooked(model, [(conv, hook(name, conv)) for name, conv in convs.items()], images, pre=True)
    return moments


def round_rows(weight: torch.Tensor, moment: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Integer codes (-127..127) of ``weight`` (rows = output channels) that keep ``||(W - s q) X||`` small.

    GPTQ's column sweep (Frantar et al. 2023, Alg. 1) with ``H = X X^T + damping``: round column ``j``,
    then spread its error over the columns after it with the Cholesky factor of ``H^-1``.
    """
    rows = weight.reshape(weight.shape[0], -1).double().clone()
    hessian = moment.clone()
    dead = torch.diag(hessian) == 0
    hessian[dead, dead] = 1.0
    rows[:, dead] = 0.0
    hessian += DAMPING * torch.diag(hessian).mean() * torch.eye(len(hessian), dtype=hessian.dtype)
    upper = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(hessian)), upper=True)
    step = scale.double()
    codes = torch.empty_like(rows)
    for j in range(rows.shape[1]):
        codes[:, j] = torch.clamp(torch.round(rows[:, j] / step), -127, 127)
        error = (rows[:, j] - codes[:, j] * step) / upper[j, j]
        rows[:, j + 1:] -= error[:, None] * upper[j, j + 1:][None, :]
    return codes.reshape(weight.shape).to(torch.int8)


@torch.no_grad()
def round_weights(graph_module: fx.GraphModule, images: torch.Tensor, names: Collection[str]
                  ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Output-error rounding of the convolutions ``names`` (module docstring, step 2), on fp32 inputs; their
    weights in ``graph_module`` become the dequantized codes. Returns {conv name: (int8 codes, per-channel
    scales)}."""
    convs = {name: conv for name, conv in graph_module.named_modules()
             if name in names and isinstance(conv, nn.Conv2d) and conv.groups == 1}
    moments = _input_moments(graph_module, convs, images)  # all on the fp32 inputs, before any rounding
    rounded = {}
    for name, conv in convs.items():
        scale = weight_scales(conv.weight)
        codes = round_rows(conv.weight, moments[name], scale)
        conv.weight.copy_(codes.float() * scale[:, None, None, None])
        rounded[name] = (codes, scale)
    return rounded


def _mean_outputs(model: nn.Module, images: torch.Tensor, names: Collection[str]) -> dict[str, torch.Tensor]:
    """Per-channel mean (float64) of the output of each biased convolution in ``names`` over ``images`` and
    positions."""
    sums: dict[str, torch.Tensor] = {}
    convs = {name: conv for name, conv in model.named_modules()
             if name in names and isinstance(conv, nn.Conv2d) and conv.bias is not None}

    def hook(name: str) -> Callable[[nn.Module, tuple, torch.Tensor], None]:
        def record(_module: nn.Module, _args: tuple, y: torch.Tensor) -> None:
            total = torch.cat([y.double().sum(dim=(0, 2, 3)), torch.tensor([y.numel() / y.shape[1]])])
            sums[name] = sums[name] + total if name in sums else total
        return record

    _run_hooked(model, [(conv, hook(name)) for name, conv in convs.items()], images)
    return {name: total[:-1] / total[-1] for name, total in sums.items()}


class _BiasCorrecting(fx.Interpreter):
    """Runs the quantized simulation once, on all images at a time, correcting each convolution's bias (in
    forward order) so its mean output matches ``targets`` before the layers after it see that output."""

    def __init__(self, simulated: fx.GraphModule, targets: Mapping[str, torch.Tensor]) -> None:
        super().__init__(simulated)
        self.targets, self.corrected = targets, {}

    def run_node(self, node: fx.Node):  # noqa: ANN201 - fx's signature
        out = super().run_node(node)
        if node.op == "call_module" and str(node.target) in self.targets:
            conv = self.module.get_submodule(str(node.target))
            shift = (out.double().mean(dim=(0, 2, 3)) - self.targets[str(node.target)]).to(out.dtype)
            conv.bias.sub_(shift)
            self.corrected[str(node.target)] = conv.bias.detach().clone()
            out = out - shift[None, :, None, None]  # the output with the corrected bias (linear in the bias)
        return out


@torch.no_grad()
def correct_biases(simulated: fx.GraphModule, reference: fx.GraphModule, images: torch.Tensor,
                   names: Collection[str]) -> dict[str, torch.Tensor]:
    """Empirical bias correction (module docstring, step 3), in forward order, of the convolutions ``names``
    of ``simulated`` (the quantized simulation) against ``reference`` (the fp32 graph it was made from), in
    place; returns {conv name: corrected bias}. One pass of each: the reference's means first, then the
    simulation on all ``images`` at once, each layer corrected before the next one runs."""
    correcting = _BiasCorrecting(simulated, _mean_outputs(reference, images, names))
    correcting.run(images)
    return correcting.corrected

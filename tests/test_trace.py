"""The one layer trace (squeezelab.models.tracing), the model-name resolver and the SqueezeNext design keywords:
names against the official prototxts, shapes against a real forward pass, the parts tracer against the built
model, and ``simulate`` / ``profile`` accepting the same names with the same MACs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from squeezelab import SqueezelabError
from squeezelab.analysis import count_params, profile
from squeezelab.cli.main import main
from squeezelab.hwsim import simulate
from squeezelab.models import (create_model, format_model_spec, get_model_entry, list_models, parse_model_spec,
                               resolve_model, trace, trace_model)
from squeezelab.models.tracing import BLOCK, PE_KINDS
from squeezelab.weights.caffe import read_prototxt

PROTOTXT = Path(__file__).resolve().parent / "data" / "prototxt"


# --- names: the model's own, as the official prototxts write them ----------------------------------------------

@pytest.mark.parametrize(("name", "prototxt"), [("squeezenet1_0", "squeezenet_v1.0_deploy.prototxt"),
                                                ("squeezenet1_1", "squeezenet_v1.1_deploy.prototxt")])
def test_squeezenet_layer_names_are_the_prototxts(name: str, prototxt: str):
    official = read_prototxt(PROTOTXT / prototxt)
    layers = trace(create_model(name, conv10_padding=1), 227)
    for caffe_type, kinds in (("Convolution", PE_KINDS), ("ReLU", ("act",)), ("Concat", ("concat",))):
        expected = [layer.name for layer in official if layer.type == caffe_type]
        assert expected and [layer.name for layer in layers if layer.kind in kinds] == expected, caffe_type


def test_squeezenext_names_follow_figures_2_and_3():
    layers = trace(create_model("sqnxt23v5_w1"), 227)
    convs = [layer.name for layer in layers if layer.is_pe]
    assert convs[:7] == ["conv1", "stage1/block1/shortcut", "stage1/block1/reduce1", "stage1/block1/reduce2",
                         "stage1/block1/separable1", "stage1/block1/separable2", "stage1/block1/expand"]
    assert convs[-2:] == ["conv_final", "fc"] and len(convs) == len(set(convs)) == 1 + 21 * 5 + 4 + 1 + 1
    blocks = [layer.name for layer in layers if layer.kind == BLOCK]
    assert blocks[:4] == ["conv1", "stage1", "stage1/block1", "stage1/block2"] and blocks[-1] == "conv_final"
    assert {layer.stage for layer in layers if layer.is_pe} == {"conv1", "stage1", "stage2", "stage3", "stage4",
                                                                  "conv_final", "fc"}


def test_unnamed_models_use_module_paths():
    layers = trace(resolve_model("mobilenet_v1").build(), 224)
    assert [layer.name for layer in layers[:3]] == ["features/0/0", "features/0/1", "features/0/2"]
    assert not any(layer.kind == BLOCK for layer in layers)


# --- shapes and counts: a batch of zero images, checked against a real run ------------------------------------

@pytest.mark.parametrize("name", ["squeezenet1_0_complex_bypass", "sqnxt23g_w1", "textbook_squeezenext"])
def test_trace_shapes_match_a_real_forward_pass(name: str):
    """Every module record's shapes are those of a real two-image run (independent hooks, batch 2)."""
    model = create_model(name).eval()
    seen: dict[str, tuple] = {}
    paths = {module: path for path, module in model.named_modules()}

    def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        seen[paths[module]] = (tuple(inputs[0].shape[1:]), tuple(output.shape[1:]), output[0].numel())

    handles = [m.register_forward_hook(record) for m in model.modules()]
    with torch.no_grad():
        model(torch.randn(2, 3, 227, 227))
    for handle in handles:
        handle.remove()
    records = [layer for layer in trace(model, 227) if layer.module]
    assert len(records) > 50
    for layer in records:
        assert (layer.input_shape, layer.output_shape, layer.elements) == seen[layer.path], layer.name
        assert layer.element_bytes == 4


def test_trace_restores_training_mode_and_runs_on_meta():
    model = create_model("squeezenet1_1").train()
    on_cpu = trace(model, 224)
    assert model.training
    with torch.device("meta"):
        meta_model = create_model("squeezenet1_1")
    assert trace(meta_model, 224) == on_cpu


def test_trace_errors_are_one_line():
    with pytest.raises(SqueezelabError, match="smaller than this model's minimum"):
        trace(create_model("squeezenet1_1"), 8)
    with pytest.raises(SqueezelabError, match="pass in_chans="):
        trace(nn.Linear(3, 3), 8)
    with pytest.raises(SqueezelabError, match="must be positive"):
        trace(create_model("squeezenet1_1"), (0, 224))


# --- SqueezeNext: traced from its parts without building it -----------------------------------------------------

SQUEEZENEXT_VARIANTS = [(name, {}) for name in list_models("sqnxt*")] + [
    ("sqnxt23v5_w1", {"depths": (3, 5, 12, 1), "width": (1, 1.5, 1.5, 2), "separable_order": "1x3_first",
                      "squeeze_ratio": 0.25}),
    ("sqnxt23v5_w1", {"stem_kernel": 7, "groups": 2, "separable_order": "3x1_first", "num_classes": 10}),
    ("sqnxt23_w1", {"small_input": True, "in_chans": 1}),
]


@pytest.mark.parametrize(("name", "kwargs"), SQUEEZENEXT_VARIANTS,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(SQUEEZENEXT_VARIANTS)])
def test_squeezenext_parts_trace_equals_the_built_model(name: str, kwargs: dict):
    size = 32 if kwargs.get("small_input") else 227
    built = trace(create_model(name, **kwargs), size)
    assert get_model_entry(name).tracer is not None
    assert list(trace_model(name, size, **kwargs).layers) == built  # every field of every record


def test_squeezenext_design_keywords():
    """The search space of issue 31: depths, per-stage widths, stem, separable order, groups, squeeze ratio."""
    v1_as_v5 = create_model("sqnxt23_w1", depths=[2, 4, 14, 1], projection_first=True, stem_kernel=5)
    assert count_params(v1_as_v5) == count_params(create_model("sqnxt23v5_w1")) == 930_016
    assert trace(v1_as_v5, 227) == trace(create_model("sqnxt23v5_w1"), 227)
    assert count_params(create_model("sqnxt23v5_w1", width=[1, 1, 1, 1])) == 930_016
    wide = create_model("sqnxt23v5_w1", width=[1, 1, 1.5, 2])
    stages = (wide.features.stage3, wide.features.stage4)
    assert [stage[0].main.expand.conv.out_channels for stage in stages] == [192, 512]
    blocks = [block for stage in ("stage1", "stage2") for block in getattr(create_model(
        "sqnxt23v5_w1", separable_order="1x3_first").features, stage)]
    assert {block.main.separable1.conv.kernel_size for block in blocks} == {(1, 3)}
    alternating = create_model("sqnxt23v5_w1").features.stage2  # blocks 3-6 of the network: 3x1 first in odd ones
    assert [b.main.separable1.conv.kernel_size for b in alternating] == [(3, 1), (1, 3), (3, 1), (1, 3)]
    thin = create_model("sqnxt23v5_w1", squeeze_ratio=0.25).features.stage1[0].main
    assert (thin.reduce1.conv.out_channels, thin.reduce2.conv.out_channels) == (8, 4)  # C = 32: C/4, C/8
    for bad in ({"squeeze_ratio": 0.3}, {"width": [1, 1]}, {"separable_order": "zigzag"}, {"depths": [0, 1, 1, 1]}):
        with pytest.raises(SqueezelabError, match="bad option for model"):
            create_model("sqnxt23v5_w1", **bad)
        with pytest.raises(SqueezelabError, match="bad option for model"):
            trace_model("sqnxt23v5_w1", **bad)


# --- one resolver: names, keywords, spec strings ------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [{}, {"depths": [2, 4, 12, 3], "width": 1.5}, {"small_input": True},
                                    {"bypass": "simple", "pct3x3": 0.75}, {"note": "a,b"}, {"text": "true"},
                                    {"nested": [[1, 2], [3]]}])
def test_model_spec_round_trip(kwargs: dict):
    text = format_model_spec("name", kwargs)
    assert parse_model_spec(text) == ("name", kwargs)


def test_resolver_sources_and_labels():
    assert resolve_model("1.0-SqNxt-23v5:width=1.5").label == "sqnxt23v5_w1:width=1.5"
    assert resolve_model("1.0-SqNxt-23v5").input_size == 227
    assert (resolve_model("MobileNet_V1").source, resolve_model("resnet18").source) == ("baseline", "torchvision")
    assert trace_model("sqnxt23v5_w1:depths=[3,5,12,1]").layers is trace_model("sqnxt23v5_w1", depths=(3, 5, 12, 1)
                                                                                 ).layers  # one cached trace
    for bad, message in (("resnet5000", "unknown model 'resnet5000'.*torchvision"), (":width=1", "has no name"),
                         ("sqnxt23v5_w1:width", "is not KEY=VALUE")):
        with pytest.raises(SqueezelabError, match=message):
            resolve_model(bad)


NAMES = [*list_models(), "1.0-SqNxt-23v5", "SqueezeNet-v1.1", "mobilenet_v1", "mobilenet_v2", "alexnet",
         "resnet18", "shufflenet_v2_x0_5", "sqnxt23v5_w1:depths=[3,5,12,1],width=1.5", "squeezenet1_0:conv10_padding=1",
         "squeezenet3", "resnet5000", "sqnxt23_w1:no_such_option=1", "sqnxt23v5_w1:squeeze_ratio=0.3"]


@pytest.mark.parametrize("name", NAMES)
def test_simulate_and_profile_accept_the_same_names(name: str, tmp_path, capsys):
    """Each name both commands accept or both refuse (exit 2, one line); accepted, they count the same MACs."""
    sim_json, prof_json = tmp_path / "sim.json", tmp_path / "prof.json"
    sim_rc = main(["simulate", name, "--input-size", "224", "--json", str(sim_json)])
    prof_rc = main(["profile", name, "--input-size", "224", "--format", "json", "-o", str(prof_json)])
    assert sim_rc == prof_rc, capsys.readouterr().err
    if sim_rc:
        assert sim_rc == 2 and capsys.readouterr().err.count("\n") == 2  # one line from each command
        return
    macs = json.loads(sim_json.read_text())["total"]["macs"]
    assert macs == json.loads(prof_json.read_text())["totals"]["macs"] > 0


def test_a_search_row_is_reproduced_by_its_command(tmp_path):
    """A design found by a search (name + keywords) is rerun by ``squeezelab simulate "NAME:KEY=VALUE,..."``."""
    kwargs = {"depths": [3, 5, 12, 1], "width": [1, 1, 1.5, 2], "separable_order": "1x3_first"}
    api = simulate("sqnxt23v5_w1", 227, "squeezelerator", overrides=kwargs)
    assert api.model == "sqnxt23v5_w1:depths=[3,5,12,1],width=[1,1,1.5,2],separable_order=1x3_first"
    out = tmp_path / "row.json"
    assert main(["simulate", api.model, "--config", "squeezelerator", "--json", str(out)]) == 0
    total = json.loads(out.read_text())["total"]
    assert (total["cycles"], total["energy"], total["macs"]) == (api.cycles, api.energy, api.macs)
    assert profile(api.model, 227, peak=False).macs == api.macs

"""Analysis: per-layer profile against SqueezeNet Table 1, fvcore, PyTorch's FLOP counter, the reference
tables, and peak activation memory against a live-tensor measurement. Budget: the whole of
tests/test_analysis*.py under 60 s on 2 cores (models are built on the meta device where only shapes matter).
"""

from __future__ import annotations

import logging
from functools import lru_cache

import pytest
import torch
from fvcore.nn import FlopCountAnalysis
from torch.utils.flop_counter import FlopCounterMode

from squeezelab.analysis import count_macs, count_params, profile
from squeezelab.models import resolve_model
from squeezelab.models.baselines import MobileNetV1
from squeezelab.analysis.memory import measure_peak_activation_bytes
from squeezelab.errors import SqueezelabError
from squeezelab.models import create_model, list_models

# SqueezeNet paper Table 1: layer, output (H, W, C) at 227, s1x1, e1x1, e3x3, #params before pruning.
TABLE1 = [
    ("conv1", (111, 111, 96), None, 14_208),
    ("maxpool1", (55, 55, 96), None, 0),
    ("fire2", (55, 55, 128), (16, 64, 64), 11_920),
    ("fire3", (55, 55, 128), (16, 64, 64), 12_432),
    ("fire4", (55, 55, 256), (32, 128, 128), 45_344),
    ("maxpool4", (27, 27, 256), None, 0),
    ("fire5", (27, 27, 256), (32, 128, 128), 49_440),
    ("fire6", (27, 27, 384), (48, 192, 192), 104_880),
    ("fire7", (27, 27, 384), (48, 192, 192), 111_024),
    ("fire8", (27, 27, 512), (64, 256, 256), 188_992),
    ("maxpool8", (13, 13, 512), None, 0),
    ("fire9", (13, 13, 512), (64, 256, 256), 197_184),
    ("conv10", (13, 13, 1000), None, 513_000),
    ("avgpool10", (1, 1, 1000), None, 0),
]

# shared/reference/models.md: exact conv+linear MACs [M] and Caffe-counted MACs in millions [C] (2 decimals).
REFERENCE_MACS_EXACT = {
    ("squeezenet1_0", 224): 818_924_576, ("squeezenet1_0", 227): 832_667_936,
    ("squeezenet1_1", 224): 349_151_936, ("squeezenet1_1", 227): 387_747_520,
    ("squeezenet1_0_simple_bypass", 224): 818_924_576, ("squeezenet1_0_simple_bypass", 227): 832_667_936,
}
REFERENCE_MMACS = {
    "sqnxt23_w1": (268.98, 278.00), "sqnxt23g_w1": (216.81, 224.19), "sqnxt23v5_w1": (222.05, 224.92),
    "sqnxt23_w2": (719.07, 742.07), "sqnxt23v5_w2": (697.96, 702.59), "sqnxt44_w2": (1301.67, 1342.86),
}
REFERENCE_PARAMS = {
    "squeezenet1_0": 1_248_424, "squeezenet1_1": 1_235_496, "squeezenet1_0_complex_bypass": 1_589_672,
    "sqnxt23_w1": 717_280, "sqnxt23g_w1": 543_072, "sqnxt23v5_w1": 930_016, "sqnxt23_w2": 2_361_728,
    "sqnxt23v5_w2": 3_222_912, "sqnxt44_w2": 4_428_096,
}


@lru_cache(maxsize=None)
def _cpu_model(name: str) -> torch.nn.Module:
    """A CPU model shared by the read-only tests below."""
    return create_model(name).eval()


def _meta_model(name: str) -> torch.nn.Module:
    with torch.device("meta"):
        return create_model(name)


def _fvcore_conv_linear(model: torch.nn.Module, size: int, in_chans: int = 3) -> int:
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    analysis = FlopCountAnalysis(model.eval(), torch.zeros(1, in_chans, size, size))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    ops = analysis.by_operator()
    return sum(ops.get(op, 0) for op in ("conv", "linear", "addmm", "matmul"))


def test_fvcore_counts_one_mac_per_multiply_add():
    """The convention check: fvcore's conv/linear 'flops' are MACs, as ours are."""
    conv, lin = torch.nn.Conv2d(8, 16, 3, padding=1, groups=2), torch.nn.Linear(7, 5)
    assert _fvcore_conv_linear(conv, 10, in_chans=8) == 16 * 10 * 10 * (8 // 2) * 9 == count_macs(conv, 10, in_chans=8)
    assert FlopCountAnalysis(lin, torch.zeros(1, 7)).total() == 7 * 5 == count_macs(lin, (1, 7), in_chans=1)


def test_table1_layer_by_layer():
    prof = profile("squeezenet1_0", 227)
    rows = prof.top_level()
    assert [r.name for r in rows] == [t[0] for t in TABLE1]
    for row, (name, (h, w, c), sizes, params) in zip(rows, TABLE1):
        assert row.params == params, name
        assert row.output_shape == (c, h, w), name
        assert (row.s1x1, row.e1x1, row.e3x3) == (sizes or (None, None, None)), name
    assert prof.params == sum(t[3] for t in TABLE1) == 1_248_424
    assert prof.size_fp32 == 4 * 1_248_424 and prof.size_fp16 == 2 * 1_248_424 and prof.size_int8 == 1_248_424
    # layer rows inside a Fire module carry Caffe's names and sum to the block row
    fire2 = [r for r in prof.layer_rows() if r.name.startswith("fire2/")]
    assert [r.name for r in fire2] == ["fire2/squeeze1x1", "fire2/expand1x1", "fire2/expand3x3"]
    assert sum(r.params for r in fire2) == 11_920
    assert sum(r.macs for r in prof.layer_rows()) == prof.macs
    csv_lines = prof.to_csv().splitlines()
    assert csv_lines[0].startswith("layer,type,") and len(csv_lines) == len(prof.layers) + 1
    assert "fire2/squeeze1x1,Conv2d,1x1/1,96x55x55,16x55x55,1552," in prof.to_csv()
    conv1 = prof.layers[0]
    assert (conv1.kernel, conv1.stride, conv1.groups) == ((7, 7), (2, 2), 1)
    assert conv1.activation_bytes == 96 * 111 * 111 * 4


@pytest.mark.parametrize("name", list_models())
def test_totals_match_pytorch_counter_and_reference(name):
    """Every registered model at 224 and 227: our totals = PyTorch's FlopCounterMode / 2 = models.md."""
    model = _meta_model(name)
    for index, size in enumerate((224, 227)):
        with FlopCounterMode(display=False) as counter, torch.no_grad():  # ATen ops of one image, its own run
            model.eval()(torch.zeros(1, model.in_chans, size, size, device="meta"))
        prof = profile(model, size, peak=False)
        assert prof.macs == counter.get_total_flops() // 2, (name, size)
        assert prof.params == count_params(model)
        if (name, size) in REFERENCE_MACS_EXACT:
            assert prof.macs == REFERENCE_MACS_EXACT[name, size]
        if name in REFERENCE_MMACS:
            assert prof.macs / 1e6 == pytest.approx(REFERENCE_MMACS[name][index], abs=0.005), (name, size)
    if name in REFERENCE_PARAMS:
        assert prof.params == REFERENCE_PARAMS[name]


@pytest.mark.parametrize("name, size", [
    ("squeezenet1_0", 224), ("squeezenet1_0", 227), ("squeezenet1_1", 224), ("squeezenet1_1", 227),
    ("squeezenet1_0_complex_bypass", 227), ("sqnxt23v5_w1", 224), ("textbook_squeezenet", 224),
])
def test_totals_match_fvcore(name, size):
    """fvcore on one model per family (its CPU tracing is slow); FlopCounterMode above covers every model."""
    model = _cpu_model(name)
    assert profile(model, size, peak=False).macs == _fvcore_conv_linear(model, size)


def test_peak_activation_memory_matches_measurement():
    """Computed (graph liveness) vs measured (live tensors while PyTorch runs the graph), within 10%."""
    computed = {}
    for name, size in (("squeezenet1_0", 227), ("sqnxt23v5_w1", 224)):
        model = _cpu_model(name)
        computed[name] = profile(model, size).peak_activation_bytes
        measured = measure_peak_activation_bytes(model, size)
        assert abs(computed[name] - measured) <= 0.10 * measured, (name, computed[name], measured)
        # eager nn.Module execution keeps some inputs alive longer: never less than the computed peak
        assert measure_peak_activation_bytes(model, size, traced=False) >= computed[name]
    # By hand from Table 1 at 227: the input image plus fire4's expand1x1, expand3x3 and their concat.
    assert computed["squeezenet1_0"] == 4 * (3 * 227 * 227 + 55 * 55 * (128 + 128 + 256))


def test_sparse_size_counts_nonzeros():
    model = create_model("squeezenet1_1")
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight[: module.weight.shape[0] // 2] = 0
                torch.nn.init.ones_(module.bias)
    prof = profile(model, 224)
    expected = sum(int((p != 0).sum()) for p in model.parameters())
    assert prof.nonzeros == expected < prof.params
    assert prof.sparse_size == 4 * expected
    assert prof.sparsity == pytest.approx(1 - expected / prof.params)


def test_profile_weights_uses_the_weights_loader(tmp_path):
    from squeezelab.weights.checkpoint import CheckpointMeta, save_checkpoint

    model = create_model("squeezenet1_1")
    with torch.no_grad():
        model.features[0].weight.zero_()
    path = tmp_path / "pruned.safetensors"
    save_checkpoint(path, model.state_dict(), CheckpointMeta(architecture="squeezenet1_1", num_classes=1000))
    prof = profile("squeezenet1_1", 224, weights=str(path))
    assert prof.nonzeros == sum(int((p != 0).sum()) for p in model.parameters())
    assert prof.layers[0].nonzeros == int((model.features[0].bias != 0).sum())


def test_baselines():
    """MobileNet v1 (Howard et al. Table 1: 4.2M params, 569M mult-adds), torchvision models without weights."""
    v1 = MobileNetV1()
    assert count_params(v1) == 4_231_976  # Keras MobileNet 1.0: 4,253,864 total minus 21,888 BN statistics
    assert count_macs(resolve_model("mobilenet_v1").build(meta=True), 224) / 1e6 == pytest.approx(569, abs=1)
    assert count_params(resolve_model("alexnet").build(meta=True)) == 61_100_840
    assert count_params(resolve_model("vgg19").build(meta=True)) == 143_667_240
    assert count_params(resolve_model("mobilenet_v2").build(meta=True)) == 3_504_872
    with pytest.raises(SqueezelabError, match="unknown model 'resnet5000'.*torchvision"):
        resolve_model("resnet5000")


def test_profile_rejects_bad_input():
    with pytest.raises(SqueezelabError):
        profile("squeezenet1_1", 8)
    with pytest.raises(SqueezelabError, match="unknown model"):
        profile("squeezenet3")

"""The zoo against its references: Caffe prototxt, torchvision, fvcore and shared/reference/models.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torchvision
from fvcore.nn import FlopCountAnalysis
from torch import nn

from squeezelab import SqueezelabError, create_model, list_models
from squeezelab.analysis import count_macs, count_params
from squeezelab.errors import InputShapeError
from squeezelab.models import SqueezeNet, fire_specs

# shared/reference/models.md and issue 2: parameters at 1000 classes; MACs at 224 and 227 where given.
REFERENCE = {
    "squeezenet1_0": (1_248_424, 818_924_576, 832_667_936),
    "squeezenet1_1": (1_235_496, 349_151_936, 387_747_520),
    "squeezenet1_0_simple_bypass": (1_248_424, 818_924_576, 832_667_936),
    "sqnxt23_w1": (717_280, 268_976_832, 277_999_808),
    "sqnxt23g_w1": (543_072, 216_810_688, 224_191_552),
    "sqnxt23v5_w1": (930_016, 222_046_464, 224_916_480),
    "sqnxt23_w2": (2_361_728, 719_066_816, 742_070_464),
    "sqnxt23v5_w2": (3_222_912, 697_960_192, 702_592_000),
    "sqnxt44_w2": (4_428_096, 1_301_665_472, 1_342_861_504),
    "textbook_squeezenet": (1_249_256, None, None),
    "textbook_squeezenext": (1_070_824, None, None),
}
# Our own counts for the variants with no published number (docs/models.md explains each).
OURS = {
    "squeezenet1_0_complex_bypass": 1_589_672,
    "sqnxt23_w1_5": 1_406_384,
    "sqnxt23v5_w1_5": 1_889_456,
    "sqnxt34_w1": 989_472,
    "sqnxt44_w1": 1_238_976,
}
ALL_MODELS = list_models()


def test_registry_covers_the_issue() -> None:
    assert set(REFERENCE) | set(OURS) == set(ALL_MODELS)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_params_and_macs(name: str) -> None:
    params, macs224, macs227 = REFERENCE[name]
    model = create_model(name)
    assert count_params(model) == params
    if macs224 is not None:
        assert count_macs(model, 224) == macs224
        assert count_macs(model, 227) == macs227


@pytest.mark.parametrize("name", sorted(OURS))
def test_stated_params(name: str) -> None:
    assert count_params(create_model(name)) == OURS[name]


def fvcore_macs(model: nn.Module, size: int) -> int:
    """Conv + linear MACs as fvcore counts them (one per multiply-add)."""
    analysis = FlopCountAnalysis(model.eval(), torch.zeros(1, model.in_chans, size, size))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    by_op = analysis.by_operator()
    return int(sum(v for k, v in by_op.items() if k in ("conv", "linear", "addmm", "matmul")))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_macs_equal_fvcore(name: str) -> None:
    model = create_model(name)
    assert count_macs(model, 224) == fvcore_macs(model, 224)


@pytest.mark.parametrize("version", ["1_0", "1_1"])
@pytest.mark.parametrize("size", [224, 227])
def test_torchvision_parity(version: str, size: int) -> None:
    reference = getattr(torchvision.models, f"squeezenet{version}")(weights=None).eval()
    ours = create_model(f"squeezenet{version}").eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(reference.state_dict())
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert (ours(x) - reference(x)).abs().max().item() <= 1e-5


def test_min_input_sizes_match_torchvision() -> None:
    # torchvision's metadata: min_size 21 (v1.0) and 17 (v1.1).
    assert create_model("squeezenet1_0").min_input_size == 21
    assert create_model("squeezenet1_1").min_input_size == 17


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_backward_min_and_224(name: str) -> None:
    model = create_model(name, num_classes=10)
    model.train()
    for size in (model.min_input_size, 224):
        x = torch.randn(2, 3, size, size, requires_grad=True)
        out = model(x)
        assert out.shape == (2, 10)
        out.sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
    with pytest.raises(InputShapeError, match="smaller than this model's minimum"):
        model(torch.randn(2, 3, model.min_input_size - 1, model.min_input_size - 1))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_timm_interface(name: str) -> None:
    model = create_model(name).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        assert torch.equal(model.forward_head(features), model(x))
        pooled = model.forward_head(features, pre_logits=True)
    assert pooled.shape == (1, model.num_features)
    model.reset_classifier(7)
    assert model(x).shape == (1, 7) and model.num_classes == 7


@pytest.mark.parametrize("name", ALL_MODELS)
def test_torch_export(name: str) -> None:
    model = create_model(name).eval()
    x = torch.randn(1, 3, 64, 64)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        assert torch.allclose(exported.module()(x), model(x), atol=1e-5)


def test_in_chans_and_channel_errors() -> None:
    grey = create_model("sqnxt23_w1", in_chans=1, num_classes=10).eval()
    assert grey(torch.randn(1, 1, 32, 32)).shape == (1, 10)
    with pytest.raises(InputShapeError, match="expected 1 input channels, got 3"):
        grey(torch.randn(1, 3, 32, 32))
    with pytest.raises(InputShapeError, match="4-D batch"):
        grey(torch.randn(1, 32, 32))


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(SqueezelabError, match="did you mean.*squeezenet1_1"):
        create_model("squeezenet1_2")


def test_paper_aliases() -> None:
    assert create_model("1.0-SqNxt-23").model_name == "sqnxt23_w1"
    assert create_model("2.0-sqnxt-23v5").model_name == "sqnxt23v5_w2"
    assert create_model("1.0-G-SqNxt-23").model_name == "sqnxt23g_w1"


def test_bad_override_is_a_user_error() -> None:
    with pytest.raises(SqueezelabError, match="bad option"):
        create_model("squeezenet1_0", no_such_option=3)


def test_design_space_defaults_rebuild_v1_0() -> None:
    # Section 5 defaults: base_e=128, incr_e=128, pct3x3=0.5, freq=2, SR=0.125 give Table 1's Fire sizes.
    table1 = [(16, 64, 64), (16, 64, 64), (32, 128, 128), (32, 128, 128), (48, 192, 192), (48, 192, 192),
              (64, 256, 256), (64, 256, 256)]
    assert [(f.s1x1, f.e1x1, f.e3x3) for f in fire_specs()] == table1
    default = SqueezeNet(version="1_0")
    reference = torchvision.models.squeezenet1_0(weights=None)
    assert {k: v.shape for k, v in default.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }


def test_design_space_sweep_models() -> None:
    # Figure 3(a) varies SR, Figure 3(b) pct3x3: check the formulas on one sweep point each.
    specs = fire_specs(sr=0.75)
    assert [f.s1x1 for f in specs] == [96, 96, 192, 192, 288, 288, 384, 384]
    specs = fire_specs(pct3x3=0.25)
    assert (specs[0].e1x1, specs[0].e3x3) == (96, 32)
    model = create_model("squeezenet1_0", sr=0.75, pct3x3=0.25, base_e=64, incr_e=32, freq=1)
    assert model.features[3].squeeze.out_channels == 48
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_textbook_fire_bug_is_real_and_repaired() -> None:
    from squeezelab.models.textbook import TextbookFire

    fire = TextbookFire(96, 128)
    assert fire(torch.randn(2, 96, 16, 16)).shape == (2, 128, 16, 16)
    fire.BN1 = nn.BatchNorm2d(128 // 4)  # the chapter's original line
    with pytest.raises(RuntimeError, match="running_mean should contain 16 elements not 32"):
        fire(torch.randn(2, 96, 16, 16))


# --- the official Caffe definitions, layer by layer -------------------------------------------------------------

def caffe_convs(path: Path) -> list[tuple]:
    """(num_output, kh, kw, stride, pad_h, pad_w, group, bias) of every Convolution, in prototxt order."""
    text = path.read_text()
    convs = []
    for body in re.findall(r"layer\s*\{(.*?)\n\}", text, re.S):
        if not re.search(r'type:\s*"Convolution"', body):
            continue
        field = dict(re.findall(r"(\w+):\s*([\w.]+)", body.split("convolution_param", 1)[1]))
        kh = int(field.get("kernel_h", field.get("kernel_size", 0)))
        kw = int(field.get("kernel_w", field.get("kernel_size", 0)))
        pad_h = int(field.get("pad_h", field.get("pad", 0)))
        pad_w = int(field.get("pad_w", field.get("pad", 0)))
        convs.append((int(field["num_output"]), kh, kw, int(field.get("stride", 1)), pad_h, pad_w,
                      int(field.get("group", 1)), field.get("bias_term", "true") == "true"))
    return convs


def our_convs(model: nn.Module) -> list[tuple]:
    return [
        (m.out_channels, *m.kernel_size, m.stride[0], *m.padding, m.groups, m.bias is not None)
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]


@pytest.mark.parametrize(
    "prototxt,name,overrides",
    [
        ("squeezenet_v1.0_deploy.prototxt", "squeezenet1_0", {"conv10_padding": 1}),
        ("squeezenet_v1.1_deploy.prototxt", "squeezenet1_1", {}),
        ("squeezenet_v1.0_simple_bypass.trainval.prototxt", "squeezenet1_0_simple_bypass", {"conv10_padding": 1}),
        ("1.0-SqNxt-23.train_val.prototxt", "sqnxt23_w1", {}),
        ("1.0-G-SqNxt-23.train_val.prototxt", "sqnxt23g_w1", {}),
        ("1.0-SqNxt-23v5.train_val.prototxt", "sqnxt23v5_w1", {}),
        ("2.0-SqNxt-23.train_val.prototxt", "sqnxt23_w2", {}),
        ("2.0-SqNxt-23v5.train_val.prototxt", "sqnxt23v5_w2", {}),
    ],
)
def test_convs_match_official_prototxt(reference_dir: Path, prototxt: str, name: str, overrides: dict) -> None:
    expected = caffe_convs(reference_dir / "prototxt" / prototxt)
    assert len(expected) > 20
    assert our_convs(create_model(name, **overrides)) == expected


def test_caffe_geometry_at_227() -> None:
    # Table 1 at the real 227 input: 111 -> 55 -> 27 -> 13.
    model = create_model("squeezenet1_0").eval()
    x = torch.zeros(1, 3, 227, 227)
    sizes = []
    for layer in model.features:
        x = layer(x)
        sizes.append(x.shape[-1])
    assert sizes[0] == 111 and sizes[2] == 55 and 27 in sizes and sizes[-1] == 13


@pytest.mark.parametrize("name", ["squeezenet1_0_simple_bypass", "squeezenet1_0_complex_bypass"])
def test_bypass_models_start_as_fixup_networks(name: str) -> None:
    """Identity-bypassed Fires start as the identity (zero expand weights, small positive expand biases) and 1x1
    bypasses at zero (docs/small-inputs.md). With plain Kaiming initialisation conv10's inputs had 67x (simple) and
    3500x (complex) the plain network's second moment, and training stalled at chance or diverged to NaN."""
    from squeezelab.models.squeezenet import BYPASS_EXPAND_BIAS_INIT, Fire

    torch.manual_seed(0)
    x = torch.randn(8, 3, 96, 96)
    model = create_model(name)
    with torch.no_grad():
        plain = create_model("squeezenet1_0").forward_features(x).pow(2).mean().item()
        bypassed = model.forward_features(x).pow(2).mean().item()
    assert bypassed < plain * 10, (plain, bypassed)
    fires = [m for m in model.features if isinstance(m, Fire)]
    identity = [f for f in fires if isinstance(f.bypass, nn.Identity)]
    convs = [f.bypass for f in fires if isinstance(f.bypass, nn.Conv2d)]
    assert len(identity) == 4 and len(convs) == (4 if "complex" in name else 0)
    for fire in identity:
        assert fire.expand1x1.weight.abs().sum() == 0 and fire.expand3x3.weight.abs().sum() == 0
        assert torch.all(fire.expand1x1.bias == BYPASS_EXPAND_BIAS_INIT)
    assert all(c.weight.abs().sum() == 0 for c in convs)

"""BatchNorm folding (exact to 1e-5) and ``squeezelab.optimize`` (checked against the eager model).

Budget: about 30 s on 2 idle cores (small inputs; auto mode times two candidates for at most 5 s; three
INT8 builds of squeezenet1_1).
"""

from __future__ import annotations

import copy
import importlib

import pytest
import torch
from torch import nn

import squeezelab
from _export_helpers import calibrated, side, single_thread  # noqa: F401
from squeezelab.errors import InputShapeError, SqueezelabError
from squeezelab.export import OnnxRuntimeModule, fold_batchnorm
from squeezelab.export.formats import max_error
from squeezelab.weights.loader import build_model

pytestmark = pytest.mark.usefixtures("single_thread")
optimize_module = importlib.import_module("squeezelab.deploy.optimize")  # the package exports the function


def _bn_count(module: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in module.modules())


@pytest.mark.parametrize("name, left", [("sqnxt23_w1", 0), ("sqnxt23v5_w1", 0), ("sqnxt23g_w1", 0),
                                        ("textbook_squeezenet", 1), ("textbook_squeezenext", 1)])
def test_batchnorm_folding_is_exact(name: str, left: int) -> None:
    model = calibrated(name)
    folded = fold_batchnorm(model)
    assert folded.folded_batchnorms == _bn_count(model) - left
    assert _bn_count(folded) == left  # only BNs after a pooling layer (the textbook stems) remain
    x = torch.randn(4, model.in_chans, side(model), side(model))
    with torch.no_grad():
        expected = model(x)
        assert expected.abs().max() > 0.1
        assert folded(x).sub(expected).abs().max().item() <= 1e-5
    assert _bn_count(model) > left  # the original is untouched


def test_folded_weights_match_the_batchnorm_formula() -> None:
    """W' = W * gamma / sqrt(var + eps), b' = (b - mean) * gamma / sqrt(var + eps) + beta (independent reference)."""
    model = calibrated("sqnxt23_w1")
    conv, bn = model.features.stem.conv, model.features.stem.bn
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    folded = fold_batchnorm(model).get_submodule("features.stem.conv")
    torch.testing.assert_close(folded.weight, conv.weight * scale[:, None, None, None], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(folded.bias, bn.bias - bn.running_mean * scale, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("backend", ["eager", "onnxruntime"])
def test_optimize_backend_matches_eager(backend: str) -> None:
    model = calibrated("sqnxt23v5_w1")
    example = torch.randn(1, 3, 40, 40)
    fast = squeezelab.optimize(model, example, backend=backend)
    assert fast.backend == backend
    x = torch.randn(3, 3, 40, 40)  # another batch size than the example
    with torch.no_grad():
        assert fast(x).sub(model(x)).abs().max().item() <= 1e-4
    assert isinstance(fast.runner, OnnxRuntimeModule) == (backend == "onnxruntime")
    with pytest.raises(InputShapeError, match="4-D"):
        fast(torch.randn(3, 40, 40))
    assert fast.report.folded_batchnorms == _bn_count(model)


def test_optimize_auto_times_the_candidates_and_picks_the_fastest() -> None:
    model = calibrated("squeezenet1_1")
    fast = squeezelab.optimize(model, torch.randn(1, 3, 48, 48), reps=4)
    timed = {c.backend: c.median_ms for c in fast.report.candidates}
    assert set(timed) == {"eager", "onnxruntime"} and all(t > 0 for t in timed.values())
    assert fast.backend == min(timed, key=timed.get)
    assert f"chose {fast.backend}" in fast.report.summary()
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert max_error(fast(x), model(x)) <= 1e-4


def test_optimize_rejects_unknown_backend_and_unavailable_int8() -> None:
    model = calibrated("squeezenet1_1")
    with pytest.raises(SqueezelabError, match="unknown backend 'tensorrt'"):
        squeezelab.optimize(model, backend="tensorrt")
    with pytest.raises(SqueezelabError, match="calibration"):
        squeezelab.optimize(model, torch.randn(1, 3, 34, 34), backend="int8")


def test_max_error_scales_with_large_logits() -> None:
    reference = torch.tensor([[1e6, -2.0]])
    assert max_error(reference + 1.0, reference) == pytest.approx(1e-6)
    assert max_error(torch.tensor([[0.5]]), torch.tensor([[0.2]])) == pytest.approx(0.3)


def test_optimize_uses_int8_only_when_allowed_and_faithful(skimage_photo_dir) -> None:
    model = build_model("squeezenet1_1.torchvision")
    example = torch.randn(1, 3, 224, 224)
    assert [c.backend for c in squeezelab.optimize(model, example, candidates=("eager",)).report.candidates] == [
        "eager"]  # not allowed: never tried
    fast = squeezelab.optimize(model, example, candidates=(), allow_int8=True, calibration=skimage_photo_dir)
    assert fast.backend == "int8" and isinstance(fast.runner, OnnxRuntimeModule)
    (candidate,) = fast.report.candidates
    assert candidate.agreement == 100.0 and 0 < candidate.error < 0.5  # same top-1 on the 4 photos, other logits
    assert "agreement 100.0%" in fast.report.summary()


def test_optimize_rejects_an_unfaithful_int8_model(skimage_photo_dir, monkeypatch) -> None:
    model = build_model("squeezenet1_1.torchvision")
    build = optimize_module._build_int8

    def broken(source: nn.Module, *args):  # a valid INT8 model of the wrong weights: classes shuffled
        damaged = copy.deepcopy(source)
        with torch.no_grad():
            weight = damaged.classifier[1].weight
            weight.copy_(weight[torch.randperm(len(weight), generator=torch.Generator().manual_seed(0))])
        return build(damaged, *args)

    monkeypatch.setattr(optimize_module, "_build_int8", broken)
    example = torch.randn(1, 3, 96, 96)
    fast = squeezelab.optimize(model, example, candidates=("eager",), allow_int8=True, calibration=skimage_photo_dir)
    assert fast.backend == "eager"
    int8 = fast.report.candidates[1]
    assert int8.backend == "int8" and int8.agreement < 98.0 and "agrees with fp32 on" in int8.rejected
    with pytest.raises(SqueezelabError, match="agrees with fp32 on"):
        squeezelab.optimize(model, example, backend="int8", calibration=skimage_photo_dir)


def test_optimize_passes_an_onnx_runtime_module_through(tmp_path) -> None:
    from squeezelab.export import export_onnx

    model = calibrated("squeezenet1_1")
    module = OnnxRuntimeModule(export_onnx(model, tmp_path / "m.onnx", input_size=34))
    fast = squeezelab.optimize(module)
    assert fast.backend == "onnxruntime" and fast.runner is module
    x = torch.randn(2, 3, 34, 34)
    with torch.no_grad():
        assert fast(x).sub(model(x)).abs().max().item() <= 1e-4


def test_onnx_runtime_spins_only_where_asked(tmp_path) -> None:
    from squeezelab.export import export_onnx

    def spinning(module: OnnxRuntimeModule) -> str:
        return module.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")

    model = calibrated("squeezenet1_1")
    assert spinning(OnnxRuntimeModule(export_onnx(model, tmp_path / "m.onnx", input_size=34))) == "0"
    example = torch.randn(1, 3, 34, 34)
    assert spinning(squeezelab.optimize(model, example, backend="onnxruntime").runner) == "1"
    assert spinning(squeezelab.optimize(model, example, backend="onnxruntime", spinning=False).runner) == "0"

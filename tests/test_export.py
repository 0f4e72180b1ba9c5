"""ONNX (run in ONNX Runtime), TorchScript and pt2 export of every zoo model, and the export CLI.

Budget: about 40 s on 2 idle cores (16 ONNX exports + 16 TorchScript traces at 34 px, 3 pt2 exports).
"""

from __future__ import annotations

import json

import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from _export_helpers import calibrated, side, single_thread  # noqa: F401
from squeezelab.cli.main import main
from squeezelab.errors import InputShapeError, SqueezelabError
from squeezelab.export import OnnxRuntimeModule, export_onnx
from squeezelab.export.formats import META_FILE, check_parity, export_model, load_exported
from squeezelab.models import list_models
from squeezelab.weights.checkpoint import CheckpointMeta

ALL_MODELS = list_models()
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("name", ALL_MODELS)
def test_onnx_matches_eager_in_onnxruntime(name: str, tmp_path) -> None:
    model = calibrated(name)
    size = side(model)
    path = export_onnx(model, tmp_path / f"{name}.onnx", input_size=size, dynamic_batch=True)
    x = torch.randn(3, model.in_chans, size, size)  # batch 3 != the traced batch 1: the batch axis is symbolic
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = model(x)
    assert expected.abs().max() < 100  # calibrated: the 1e-4 bound is a real bound
    assert torch.from_numpy(logits).sub(expected).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name", ALL_MODELS)
def test_torchscript_matches_eager(name: str, tmp_path) -> None:
    model = calibrated(name)
    path = export_model(model, tmp_path / f"{name}.pt", "torchscript", input_size=side(model))
    x = torch.randn(2, model.in_chans, side(model), side(model))
    with torch.no_grad():
        assert load_exported(path, "torchscript")(x).sub(model(x)).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name", ["squeezenet1_1", "sqnxt23v5_w1", "textbook_squeezenet"])
def test_pt2_matches_eager_with_dynamic_batch(name: str, tmp_path) -> None:
    model = calibrated(name)
    meta = CheckpointMeta(name, model.num_classes)
    path = export_model(model, tmp_path / f"{name}.pt2", "pt2", input_size=side(model), meta=meta)
    x = torch.randn(5, model.in_chans, side(model), side(model))
    with torch.no_grad():
        assert load_exported(path, "pt2")(x).sub(model(x)).abs().max().item() <= 1e-4
    extra = {META_FILE: ""}
    torch.export.load(str(path), extra_files=extra)
    assert CheckpointMeta.from_strings(json.loads(extra[META_FILE])).architecture == name


def test_ceil_mode_pools_export_as_ceil_mode() -> None:
    from squeezelab.export.onnx import onnx_bytes

    graph = onnx.load_from_string(onnx_bytes(calibrated("squeezenet1_0"), input_size=34)).graph
    pools = [n for n in graph.node if n.op_type == "MaxPool"]
    assert len(pools) == 3
    assert all(onnx.helper.get_attribute_value(a) == 1 for n in pools for a in n.attribute if a.name == "ceil_mode")


def test_onnx_metadata_and_runtime_module(tmp_path) -> None:
    model = calibrated("squeezenet1_1")
    meta = CheckpointMeta("squeezenet1_1", 1000, categories=["tench", "goldfish"], source="unit-test")
    path = export_onnx(model, tmp_path / "m.onnx", input_size=40, meta=meta)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props == meta.to_strings()
    module = OnnxRuntimeModule(path, threads=1)
    assert module.meta == meta
    x = torch.randn(2, 3, 40, 40).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert module(x).sub(model(x)).abs().max().item() <= 1e-4
    with pytest.raises(InputShapeError, match="expects input shape"):
        module(torch.randn(1, 3, 41, 40))
    with pytest.raises(InputShapeError, match="4-D"):
        module(torch.randn(3, 40, 40))
    assert OnnxRuntimeModule(export_onnx(model, tmp_path / "plain.onnx", input_size=40)).meta is None


def test_fixed_batch_onnx_rejects_other_batches(tmp_path) -> None:
    path = export_onnx(calibrated("squeezenet1_1"), tmp_path / "m.onnx", input_size=34, dynamic_batch=False)
    with pytest.raises(InputShapeError, match="--dynamic-batch"):
        OnnxRuntimeModule(path)(torch.randn(2, 3, 34, 34))


class _FFTNet(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft2(x).abs().flatten(1)


def test_unexportable_model_is_a_clear_error_and_writes_nothing(tmp_path, capfd) -> None:
    target = tmp_path / "fft.onnx"
    with pytest.raises(SqueezelabError, match="cannot export _FFTNet to ONNX.*fft_rfft2"):
        net = _FFTNet()
        net.pretrained_cfg = CheckpointMeta("_FFTNet", num_classes=75)  # what build_model would attach
        export_onnx(net, target, input_size=8)
    assert not target.exists() and not list(tmp_path.iterdir())
    assert "Torch IR graph" not in "".join(capfd.readouterr())


def test_too_small_input_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(SqueezelabError, match="minimum 21"):
        export_model(calibrated("squeezenet1_0"), tmp_path / "m.pt", "torchscript", input_size=16)


def test_parity_check_catches_a_wrong_file(tmp_path) -> None:
    path = export_onnx(calibrated("squeezenet1_1"), tmp_path / "m.onnx", input_size=34)
    other = calibrated("squeezenet1_0")  # same input/output shapes, different function
    with pytest.raises(SqueezelabError, match="differ from eager"):
        check_parity(other, path, "onnx", 34)


def test_missing_and_corrupt_onnx_files(tmp_path) -> None:
    with pytest.raises(SqueezelabError, match="does not exist"):
        OnnxRuntimeModule(tmp_path / "none.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf")
    with pytest.raises(SqueezelabError, match="cannot load"):
        OnnxRuntimeModule(bad)


def test_cli_export_onnx_with_parity(tmp_path, capsys) -> None:
    out = tmp_path / "sq.onnx"
    assert main(["export", "squeezenet1_1", "--format", "onnx", "-o", str(out), "--input-size", "48",
                 "--dynamic-batch"]) == 0
    text = capsys.readouterr().out
    assert "exported squeezenet1_1" in text and "parity: ONNX Runtime vs eager on a random 2x3x48x48" in text
    assert OnnxRuntimeModule(out).input_shape == ("batch", 3, 48, 48)


def test_cli_export_errors_are_one_line(tmp_path, capsys) -> None:
    assert main(["export", "squeezenet9", "-o", str(tmp_path / "x.onnx")]) == 2
    assert main(["export", "squeezenet1_1", "--input-size", "8", "-o", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "unknown model 'squeezenet9'" in err[0] and "minimum 17" in err[1]
    assert not list(tmp_path.iterdir())

"""Weights registry: local folders, the bundled upstream files, the sha256-checked download (file:// and a 127.0.0.1 server), build_model,
create_model(weights=...), and `squeezelab convert`."""

from __future__ import annotations

import dataclasses
import functools
import http.server
import threading
import warnings
from pathlib import Path

import pytest
import torch

from squeezelab import create_model
from squeezelab.cli.main import main
from squeezelab.errors import SqueezelabError
from squeezelab.io import sha256_file
from squeezelab.weights import CheckpointMeta, build_model, load_weights, read_checkpoint, read_deep_compression, \
    registry, save_checkpoint
from squeezelab.weights.registry import WEIGHTS, WeightFile, fetch_weights

WEIGHTS_DIR = registry.BUNDLED_DIR
#: The entries decoded from upstream files (the checkpoints squeezelab trained: tests/test_trained_weights.py).
UPSTREAM = {name: entry for name, entry in WEIGHTS.items() if entry.files[0].url is not None}
DC = WEIGHTS_DIR / "squeezenet_v1.0_deep_compression" / "compressed_SqueezeNet.net"
DC_NAME = "squeezenet1_0.deep_compression"


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No local folders, no bundled files and an empty cache: every registered name must be downloaded."""
    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(registry.WEIGHTS_DIR_ENV, "")
    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path / "no-bundle")
    return tmp_path / "cache"


@pytest.fixture
def http_root(tmp_path):
    """A plain HTTP server on 127.0.0.1 serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _point_entry(monkeypatch, url: str) -> None:
    entry = WEIGHTS[DC_NAME]
    moved = dataclasses.replace(entry, files=(dataclasses.replace(entry.files[0], url=url),))
    monkeypatch.setitem(WEIGHTS, DC_NAME, moved)


def _cache_files(cache: Path) -> list[Path]:
    return sorted(p for p in cache.rglob("*") if p.is_file()) if cache.exists() else []


def test_download_over_http_verifies_and_caches(isolated, http_root, monkeypatch):
    root, base = http_root
    (root / "compressed_SqueezeNet.net").write_bytes(DC.read_bytes())
    _point_entry(monkeypatch, f"{base}/compressed_SqueezeNet.net")
    path = fetch_weights(DC_NAME)
    assert path == isolated / DC_NAME / "compressed_SqueezeNet.net"
    assert path.read_bytes() == DC.read_bytes()
    (root / "compressed_SqueezeNet.net").unlink()  # a second call uses the cache, not the server
    state, meta = load_weights(DC_NAME)
    reference, _ = read_deep_compression(DC)
    assert all(torch.equal(state[k], reference[k]) for k in reference)
    assert meta.architecture == "squeezenet1_0" and meta.model_kwargs == {"conv10_padding": 1}
    assert meta.source_sha256 == WEIGHTS[DC_NAME].files[0].sha256


def test_download_from_file_url(isolated, monkeypatch):
    _point_entry(monkeypatch, DC.as_uri())
    assert fetch_weights(DC_NAME).read_bytes() == DC.read_bytes()


def test_sha256_mismatch_leaves_nothing_in_cache(isolated, http_root, monkeypatch):
    root, base = http_root
    (root / "compressed_SqueezeNet.net").write_bytes(DC.read_bytes()[:-10])
    _point_entry(monkeypatch, f"{base}/compressed_SqueezeNet.net")
    with pytest.raises(SqueezelabError, match="sha256") as info:
        fetch_weights(DC_NAME)
    assert "\n" not in str(info.value)
    assert _cache_files(isolated) == []


def test_offline_error_says_how_to_pass_a_local_file(isolated, http_root, monkeypatch):
    _, base = http_root
    _point_entry(monkeypatch, f"{base}/missing.net")
    with pytest.raises(SqueezelabError, match=r"--weights /path/to/compressed_SqueezeNet.net"):
        fetch_weights(DC_NAME)
    assert _cache_files(isolated) == []


def test_local_folder_is_searched_and_hash_checked(isolated, tmp_path, monkeypatch):
    local = tmp_path / "local" / "dc"
    local.mkdir(parents=True)
    (local / "compressed_SqueezeNet.net").write_bytes(DC.read_bytes())
    monkeypatch.setenv(registry.WEIGHTS_DIR_ENV, str(tmp_path / "local"))
    assert fetch_weights(DC_NAME) == local / "compressed_SqueezeNet.net"
    (local / "compressed_SqueezeNet.net").write_bytes(DC.read_bytes()[:1000])
    with pytest.raises(SqueezelabError, match="wrong sha256"):
        fetch_weights(DC_NAME)
    with pytest.raises(SqueezelabError, match="downloads are off"):
        fetch_weights("squeezenet1_1.caffe", allow_download=False)


def test_bundled_files_are_found_offline_in_order(tmp_path, monkeypatch):
    """$SQUEEZELAB_WEIGHTS_DIR first, then the bundled upstream files, then the cache; no download, no cwd guess."""
    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(registry.WEIGHTS_DIR_ENV, "")
    monkeypatch.chdir(tmp_path)

    def no_network(*args, **kwargs):
        raise AssertionError("fetch_weights tried the network")

    monkeypatch.setattr(registry.urllib.request, "urlopen", no_network)
    for name, entry in UPSTREAM.items():
        path = fetch_weights(name, allow_download=False)
        assert path.parent.parent == WEIGHTS_DIR and path.name == entry.files[0].filename
        assert all(sha256_file(path.parent / f.filename) == f.sha256 for f in entry.files)
    assert not (tmp_path / "cache").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "compressed_SqueezeNet.net").write_bytes(DC.read_bytes())
    monkeypatch.setenv(registry.WEIGHTS_DIR_ENV, str(mine))
    assert fetch_weights(DC_NAME) == mine / "compressed_SqueezeNet.net"
    monkeypatch.setenv(registry.WEIGHTS_DIR_ENV, "")
    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path / "no-bundle")
    cached = tmp_path / "cache" / DC_NAME / "compressed_SqueezeNet.net"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(DC.read_bytes())
    assert fetch_weights(DC_NAME) == cached


def test_bundled_files_are_package_data_with_their_source():
    import tomllib

    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["squeezelab"]
    package = root / "src" / "squeezelab"
    shipped = {p for pattern in patterns for p in package.glob(pattern) if p.is_file()}
    source = (WEIGHTS_DIR / "SOURCE.md").read_text()
    assert WEIGHTS_DIR / "SOURCE.md" in shipped and "BSD" in source and "no licence file" in source
    for entry in UPSTREAM.values():
        for wfile in entry.files:
            (bundled,) = WEIGHTS_DIR.glob(f"*/{wfile.filename}")
            owner, repo, commit = wfile.url.split("/")[3:6]
            assert bundled in shipped and wfile.sha256 in source and f"{owner}/{repo} @ {commit}" in source


def test_unknown_name_lists_registered_weights():
    with pytest.raises(SqueezelabError, match="squeezenet1_1.torchvision"):
        load_weights("squeezenet1_1.imagenet")


def test_registry_entries_are_complete():
    assert len(UPSTREAM) == 3
    for entry in UPSTREAM.values():
        assert entry.files and all(isinstance(f, WeightFile) for f in entry.files)
        for wfile in entry.files:
            assert wfile.url.startswith("https://raw.githubusercontent.com/") and len(wfile.sha256) == 64
            local = next(WEIGHTS_DIR.glob(f"*/{wfile.filename}"))
            assert local.stat().st_size == wfile.size
        assert {"imagenet_top1", "imagenet_top5", "samples100_top1", "samples100_top5"} <= set(entry.metrics)


def test_architecture_mismatch_is_one_line_error():
    with pytest.raises(SqueezelabError, match="are for squeezenet1_1, not squeezenet1_0"):
        build_model("squeezenet1_1.caffe", architecture="squeezenet1_0")
    with pytest.raises(SqueezelabError, match="do not fit squeezenet1_1"):
        create_model("squeezenet1_1", weights="squeezenet1_1.caffe", sr=0.25)


def test_create_model_with_weights_matches_build_model():
    model = create_model("SqueezeNet-v1.1", weights="squeezenet1_1.torchvision")
    reference = build_model(WEIGHTS_DIR / "squeezenet_v1.1_torchvision_ncnn_fp16" / "squeezenet_v1.1.ncnn.bin")
    assert not model.training
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    head = create_model("squeezenet1_1", weights="squeezenet1_1.torchvision", num_classes=10)
    assert head.num_classes == 10 and torch.equal(head.features[0].weight, model.features[0].weight)


def test_model_from_state_copies_the_state_it_is_given():
    """Compression changes a rebuilt model's weights in place while the state it came from stays the parent:
    the model must hold copies (a model aliasing its state turned refinement into damage)."""
    from squeezelab.weights.loader import model_from_state

    state, meta = load_weights("squeezenet1_1.torchvision")
    before = {k: v.clone() for k, v in state.items()}
    model = model_from_state(state, meta)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(0.5)
    assert all(torch.equal(state[k], before[k]) for k in state)


def test_cli_convert_round_trip(tmp_path, capsys):
    out = tmp_path / "dc.safetensors"
    assert main(["convert", "--from", "deep-compression", str(DC), "-o", str(out)]) == 0
    assert "squeezenet1_0" in capsys.readouterr().out
    state, meta = read_checkpoint(out)
    reference, _ = read_deep_compression(DC)
    assert all(torch.equal(state[k], reference[k]) for k in reference)
    assert meta.architecture == "squeezenet1_0" and meta.preprocess == WEIGHTS[DC_NAME].preprocess
    assert meta.preprocess.channel_order == "BGR" and meta.preprocess.crop == 227
    assert meta.source_sha256 == WEIGHTS[DC_NAME].files[0].sha256 and len(meta.categories) == 1000
    model = build_model(out, architecture="squeezenet1_0")
    assert model.get_classifier().padding == (1, 1)


def test_cli_convert_errors_are_one_line(tmp_path, capsys):
    out = tmp_path / "x.safetensors"
    assert main(["convert", "--from", "ncnn", str(DC), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("squeezelab: error:") and err.count("\n") == 1 and "--from deep-compression" in err
    truncated = tmp_path / "t.net"
    truncated.write_bytes(DC.read_bytes()[:5000])
    assert main(["convert", str(truncated), "-o", str(out)]) == 2
    assert "truncated" in capsys.readouterr().err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["t.net"]


def test_sqz_is_detected_by_magic_and_dispatched(tmp_path, monkeypatch):
    from squeezelab.compress import sqz

    state = {"w": torch.ones(2)}
    meta = CheckpointMeta(architecture="squeezenet1_1", num_classes=1000)
    calls = []
    monkeypatch.setattr(sqz, "read_sqz", lambda path: calls.append(Path(path)) or (state, meta))
    path = tmp_path / "model.bin"
    path.write_bytes(b"SQZLAB\x00" + bytes(100))
    assert load_weights(path) == (state, meta) and calls == [path]


def test_onnx_file_loads_as_runtime_module(tmp_path):
    import onnx

    with torch.device("meta"):
        model = create_model("squeezenet1_1", num_classes=4, small_input=True)
    model = model.to_empty(device="cpu").eval()
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=torch.Generator().manual_seed(1)) * 0.1)
    meta = CheckpointMeta(architecture="squeezenet1_1", num_classes=4, model_kwargs={"small_input": True})
    path = tmp_path / "m.model"  # detected from the content, not the extension
    x = torch.randn(2, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings from the model's input-shape check
        torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}})
    proto = onnx.load(str(path))
    for key, value in meta.to_strings().items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(proto, str(path))
    runtime = build_model(path, architecture="squeezenet1_1")
    loaded = runtime.pretrained_cfg
    assert loaded.num_classes == 4 and loaded.model_kwargs == {"small_input": True}
    with torch.no_grad():
        torch.testing.assert_close(runtime(x), model(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(SqueezelabError, match="not squeezenet1_0"):
        build_model(path, architecture="squeezenet1_0")


def test_build_model_resolves_names_through_the_one_resolver(tmp_path: Path) -> None:
    """A bare name goes through ``models.resolve_model``: torchvision names build torchvision's model (same
    parameter shapes), ``NAME:KEY=VALUE`` keywords land in ``pretrained_cfg.model_kwargs`` and survive a
    checkpoint round trip; no preprocessing is invented for an untrained model."""
    import torchvision

    resnet = build_model("resnet18", 10)
    reference = torchvision.models.resnet18(num_classes=10)
    shapes = {k: v.shape for k, v in resnet.state_dict().items()}
    assert shapes == {k: v.shape for k, v in reference.state_dict().items()}
    wide = build_model("sqnxt23v5_w1:width=1.5", 10)
    cfg = wide.pretrained_cfg
    assert (cfg.architecture, cfg.num_classes, cfg.model_kwargs) == ("sqnxt23v5_w1", 10, {"width": 1.5})
    assert cfg.preprocess is None
    save_checkpoint(tmp_path / "wide.safetensors", wide.state_dict(), cfg)
    again = build_model(tmp_path / "wide.safetensors")
    assert again.pretrained_cfg.model_kwargs == {"width": 1.5}
    assert all(torch.equal(again.state_dict()[k], v) for k, v in wide.state_dict().items())
    with pytest.raises(SqueezelabError, match="neither a weights file nor registered weights"):
        build_model("no_such_model")

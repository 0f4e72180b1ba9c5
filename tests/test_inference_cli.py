"""`squeezelab predict` / `eval` on real weights and on a training-style native checkpoint, and their bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from squeezelab.cli.main import main
from squeezelab.data.preprocess import Preprocess
from squeezelab.errors import SqueezelabError
from squeezelab.inference import evaluate, scan_images
from squeezelab.models import create_model
from squeezelab.weights import CheckpointMeta, build_model, registry, save_checkpoint

DC_FILE = registry.BUNDLED_DIR / "squeezenet_v1.0_deep_compression" / "compressed_SqueezeNet.net"


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("squeezelab: error:") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_cli_predict_json(skimage_photo_dir, capsys):
    photos = [skimage_photo_dir / "coffee.png", skimage_photo_dir / "chelsea.png"]
    assert main(["predict", "squeezenet1_1", "--weights", "squeezenet1_1.torchvision", *map(str, photos), "--json",
                 "--topk", "3"]) == 0
    coffee, chelsea = ([c["name"] for c in result["top"]] for result in json.loads(capsys.readouterr().out))
    # Shared data README §5.1 with v1.1-tv: coffee = espresso .84, consomme .12; chelsea = Egyptian cat .69,
    # tabby .15, tiger cat .15.
    assert coffee[:2] == ["espresso", "consomme"] and len(coffee) == 3
    assert chelsea[0] == "Egyptian cat" and set(chelsea) == {"Egyptian cat", "tabby", "tiger cat"}


def test_cli_predict_errors(skimage_photo_dir, tmp_path, capsys):
    photo = skimage_photo_dir / "chelsea.png"
    assert main(["predict", "squeezenet1_0", "--weights", "squeezenet1_1.caffe", str(photo)]) == 2
    assert "are for squeezenet1_1" in _one_line_error(capsys)
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("not a picture")
    assert main(["predict", "squeezenet1_1", "--weights", "squeezenet1_1.caffe", str(not_image)]) == 2
    assert "cannot read image" in _one_line_error(capsys)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """What the training stage writes: a small-input 3-class model with its categories and preprocessing."""
    with torch.device("meta"):
        model = create_model("squeezenet1_1", num_classes=3, small_input=True)
    model = model.to_empty(device="cpu").eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    meta = CheckpointMeta(architecture="squeezenet1_1", num_classes=3, model_kwargs={"small_input": True},
                          preprocess=Preprocess(crop=32, resize=32, resize_mode="squash", mean=(0.5,) * 3,
                                                std=(0.25,) * 3),
                          categories=["bird", "cat", "dog"])
    path = tmp_path_factory.mktemp("run") / "best.safetensors"
    save_checkpoint(path, model.state_dict(), meta)
    return path, model


def _image_folder(root: Path) -> list[tuple[Path, int]]:
    rng = np.random.default_rng(0)
    samples = []
    for label, name in enumerate(["bird", "cat", "dog"]):
        (root / name).mkdir(parents=True)
        for i in range(4):
            path = root / name / f"{i}.png"
            Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(path)
            samples.append((path, label))
    (root / "cat" / "README.txt").write_text("not an image")
    return samples


def test_eval_native_checkpoint_image_folder(tiny_checkpoint, tmp_path, capsys):
    ckpt, reference = tiny_checkpoint
    samples = _image_folder(tmp_path / "data")
    out = tmp_path / "eval.json"
    threads = torch.get_num_threads()
    try:
        assert main(["eval", "squeezenet1_1", "--weights", str(ckpt), "--data", str(tmp_path / "data"),
                     "--batch-size", "5", "--workers", "0", "--threads", "1", "--json", str(out), "--no-progress"]) == 0
    finally:
        torch.set_num_threads(threads)
    result = json.loads(out.read_text())
    assert result["threads"] == 1
    meta = build_model(ckpt).pretrained_cfg
    with torch.no_grad():
        logits = reference(torch.stack([meta.preprocess(Image.open(p)) for p, _ in samples]))
    labels = torch.tensor([label for _, label in samples])
    expected_top1 = 100.0 * float((logits.argmax(1) == labels).float().mean())
    assert result["count"] == 12 and result["skipped"] == 1 and result["top5"] == 100.0
    assert result["top1"] == pytest.approx(expected_top1)
    assert result["layout"].startswith("imagefolder") and result["model"] == "squeezenet1_1"
    assert "top-1" in capsys.readouterr().out


def test_eval_corrupt_image_is_one_line_error(tiny_checkpoint, tmp_path, capsys):
    ckpt, _ = tiny_checkpoint
    _image_folder(tmp_path / "data")
    (tmp_path / "data" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "eval.json"
    assert main(["eval", "squeezenet1_1", "--weights", str(ckpt), "--data", str(tmp_path / "data"), "--workers",
                 "0", "--json", str(out), "--no-progress"]) == 2
    assert "broken.jpg" in _one_line_error(capsys)
    assert not out.exists()


def test_eval_empty_or_missing_data_dir(tiny_checkpoint, tmp_path, capsys):
    ckpt, _ = tiny_checkpoint
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "n01440764_tench.txt").write_text("x")
    for data in (tmp_path / "empty", tmp_path / "missing"):
        assert main(["eval", "squeezenet1_1", "--weights", str(ckpt), "--data", str(data), "--no-progress"]) == 2
        _one_line_error(capsys)


def test_imagenet_layouts_map_wnids(tmp_path):
    """Flat nXXXXXXXX_*.JPEG files and wnid class folders both map through the synset list."""
    meta = CheckpointMeta(architecture="squeezenet1_1", num_classes=1000)
    # The 100-sample set's naming (shared data README §1): label = the wnid in the file name.
    (tmp_path / "flat").mkdir()
    for wnid, name in (("n01440764", "tench"), ("n01530575", "brambling"), ("n15075141", "toilet_tissue")):
        Image.new("RGB", (8, 8)).save(tmp_path / "flat" / f"{wnid}_{name}.JPEG", format="JPEG")
    flat = scan_images(tmp_path / "flat", meta)
    assert sorted(flat.labels) == [0, 10, 999] and "flat" in flat.layout
    for wnid in ("n01443537", "n15075141"):
        (tmp_path / "folders" / wnid).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "folders" / wnid / "a.png")
    folders = scan_images(tmp_path / "folders", meta)
    assert list(folders.labels) == [1, 999] and "wnid" in folders.layout


def test_imagenet_samples_map_to_every_tenth_class(imagenet_samples):
    flat = scan_images(imagenet_samples, CheckpointMeta(architecture="squeezenet1_1", num_classes=1000))
    assert list(flat.labels) == list(range(0, 1000, 10))


def test_evaluate_rejects_more_folders_than_classes(tiny_checkpoint, tmp_path):
    _, model = tiny_checkpoint
    model.pretrained_cfg = CheckpointMeta(architecture="squeezenet1_1", num_classes=3)
    for name in "abcd":
        (tmp_path / "d" / name).mkdir(parents=True)
    with pytest.raises(SqueezelabError, match="4 class folders but the model has 3"):
        evaluate(model, tmp_path / "d")


def test_demo_stage_with_and_without_offline_weights(tmp_path, monkeypatch):
    from squeezelab.demo import DemoContext, Report
    from squeezelab.demo.inference import pretrained_stage

    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(registry.WEIGHTS_DIR_ENV, str(tmp_path / "weights"))
    bundled = DemoContext(Report(tmp_path / "bundled"), quick=True)
    pretrained_stage(bundled)  # the upstream files that ship with the package, no download
    assert bundled.artifacts["pretrained_weights"] == sorted(n for n, e in registry.WEIGHTS.items()
                                                             if e.dataset == "imagenet")
    assert "Weights not found locally" not in (tmp_path / "bundled" / "report.md").read_text()
    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path / "no-bundle")
    bare = DemoContext(Report(tmp_path / "bare"), quick=True)
    pretrained_stage(bare)
    text = (tmp_path / "bare" / "report.md").read_text()
    assert "No pretrained weights are available offline" in text and registry.WEIGHTS_DIR_ENV in text
    assert not (tmp_path / "cache").exists()
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "compressed_SqueezeNet.net").symlink_to(DC_FILE)
    ctx = DemoContext(Report(tmp_path / "one"), quick=True)
    pretrained_stage(ctx)
    text = (tmp_path / "one" / "report.md").read_text()
    assert ctx.artifacts["pretrained_weights"] == ["squeezenet1_0.deep_compression"]
    # OpenCV-style resize of the Caffe weights (shared README §5.1 has 0.70 and 0.96 with PIL's antialiased one).
    assert "| chelsea" in text and "Egyptian cat 0.75" in text and "espresso 0.99" in text

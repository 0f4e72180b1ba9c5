"""Bad and hostile inputs to every command: exit 2, one line naming the problem, no traceback, nothing written.

Each case of :data:`CASES` runs the CLI in-process in a working folder of small inputs (a
10-class squeezenet1_1 checkpoint at 64 px, a few tiny images, a decompression-bomb PNG
header, a FIFO, a socket, a character device...) and checks that the folder is unchanged
afterwards: no new, changed or partial file. ``docs/reliability.md`` lists the promises.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch
from PIL import Image

from _cli_driver import run_commands
from squeezelab.cli.main import main
from squeezelab.compress.prune import save_masks
from squeezelab.data.preprocess import Preprocess
from squeezelab.models import create_model
from squeezelab.weights import build_model
from squeezelab.weights.checkpoint import CheckpointMeta, save_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int = 40_000) -> bytes:
    """A 100-byte PNG whose header claims side x side RGB pixels (a decompression bomb for PIL)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\x00"))
            + _png_chunk(b"IEND", b""))


def crafted_sqz(header: object) -> bytes:
    """A ``.sqz`` file with a valid magic, version and CRC around an arbitrary (wrong) JSON header."""
    head = zlib.compress(json.dumps(header).encode())
    body = struct.pack("<7sBI", b"SQZLAB\x00", 1, len(head)) + head + b"\x00" * 16
    return body + struct.pack("<I", zlib.crc32(body))


def idx_bytes(dims: list[int], payload: bytes) -> bytes:
    """An IDX uint8 file (LeCun's MNIST format) with the header ``dims`` (true or not) and ``payload``."""
    return bytes([0, 0, 0x08, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + payload


def fashion_mnist_files(folder: Path, labels: list[int], image_dims: list[int] | None = None) -> None:
    """The four Fashion-MNIST IDX files of 28x28 zero images with ``labels`` (a lying image header if given)."""
    folder.mkdir()
    n = len(labels)
    for split in ("train", "t10k"):
        dims = image_dims or [n, 28, 28]
        payload = b"" if image_dims else bytes(n * 28 * 28)
        (folder / f"{split}-images-idx3-ubyte").write_bytes(idx_bytes(dims, payload))
        (folder / f"{split}-labels-idx1-ubyte").write_bytes(idx_bytes([n], bytes(labels)))


def tiny_onnx(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(path))


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The inputs every case may read; the cases must leave this folder exactly as it is."""
    d = tmp_path_factory.mktemp("bad_inputs")
    torch.manual_seed(0)
    meta = CheckpointMeta(architecture="squeezenet1_1", num_classes=10, preprocess=Preprocess(crop=64, resize=64),
                          categories=[f"class{i}" for i in range(10)])
    state = create_model("squeezenet1_1", num_classes=10).state_dict()
    save_checkpoint(d / "ckpt.safetensors", state, meta)
    state["classifier.1.weight"][0, 0, 0, 0] = float("nan")
    save_checkpoint(d / "nan.safetensors", state, meta)
    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(d / "img.png")
    Image.fromarray(np.full((8, 8), np.nan, dtype=np.float32)).save(d / "nan.tif")
    (d / "notimage.png").write_bytes(b"this is text, not a PNG\n")
    (d / "bomb.png").write_bytes(bomb_png())
    for folder, name in (("data/a", "1.png"), ("data/b", "2.png"), ("bombdata/a", "1.png")):
        (d / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(d / folder / name)
    (d / "bombdata/b").mkdir()
    (d / "bombdata/b/bomb.png").write_bytes(bomb_png())
    for name in ("a", "b"):
        (d / "unreadable" / name).mkdir(parents=True)
        for i in range(5):
            (d / "unreadable" / name / f"{i}.png").write_bytes(b"not a PNG\n")
    fashion_mnist_files(d / "fmnist_badlabel", [3, 200, 1, 0])  # label 200 of 10 classes
    fashion_mnist_files(d / "fmnist_overflow", [0, 1], image_dims=[2 ** 31, 2 ** 31, 4])  # 2**64: wraps in int64
    (d / "dir").mkdir()
    (d / "dir.md").mkdir()
    (d / "w.xml").write_text("<?xml version='1.0'?>\n<net name='x'><layers/></net>\n")
    (d / "w.bin").write_bytes(b"\x00" * 64)
    (d / "c.sqz").write_bytes(b"SQZLAB\x00\x01" + b"\x00" * 32)
    (d / "masks.safetensors").write_bytes(b"\x00" * 16)
    (d / "header.sqz").write_bytes(crafted_sqz({"format": "squeezelab-sqz", "tensors": 7, "streams": []}))
    (d / "lying.sqz").write_bytes(crafted_sqz({
        "format": "squeezelab-sqz", "meta": {}, "bits": 8, "index_bits": 4, "tensors": [],
        "streams": {k: {"alphabet": 256, "count": 10 ** 12, "nbits": 10 ** 13, "lengths_offset": 0, "offset": 0,
                        "nbytes": 16} for k in ("codes", "gaps")}}))
    tiny_onnx(d / "model.onnx")
    save_masks(d / "wrong_masks.safetensors", {"features.0.weight": torch.ones(3, 3, dtype=torch.bool)})
    (d / "latin1.json").write_bytes('{"name": "caf\xe9"}'.encode("latin-1"))
    (d / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (d / "deep.yaml").write_text("[" * 100_000 + "]" * 100_000)
    (d / "deep.prototxt").write_text("layer {" * 100_000 + "}" * 100_000)
    (d / "list_preset.json").write_text('{"preset": ["default"]}')
    (d / "inf_clock.json").write_text('{"clock_hz": Infinity}')
    (d / "inf_energy.json").write_text('{"energy": {"mac": 1, "rf": 1, "noc": 2, "glb": 6, "dram": Infinity}}')
    (d / "nan_energy.yaml").write_text("energy: {mac: .nan, rf: 1, noc: 2, glb: 6, dram: 200}\n")
    for name, state in (("foreign", {"foo": 1}), ("no_keys", {"epoch": 1}), ("not_a_dict", [1, 2])):
        (d / name).mkdir()
        torch.save(state, d / name / "state.pt")
    (d / "not_torch").mkdir()
    (d / "not_torch" / "state.pt").write_bytes(b"\x00" * 64)
    os.mkfifo(d / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(d / "sock"))
    sock.close()
    try:
        os.mknod(d / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null of our own
    except (PermissionError, AttributeError):
        os.mkfifo(d / "null")
    return d


W = "--weights {d}/ckpt.safetensors"
P = "squeezenet1_1 {d}/img.png " + W  # predict's usual arguments

# (argv with {d} = the working folder, text the one error line must contain)
CASES = [
    # top level
    ("nosuchcommand", "invalid choice"),
    ("", "required"),
    # list / info
    ("list zzz*", "no model matches"),
    ("info nosuchmodel", "nosuchmodel"),
    ("info squeezenet1_1 --input-size 0", "--input-size"),
    ("info squeezenet1_1 --input-size 100000", "at most 2048"),
    ("info squeezenet1_1 --input-size nan", "--input-size"),
    ("info squeezenet1_1 --num-classes -3", "--num-classes"),
    ("info squeezenet1_1 --input-size 8", "minimum"),
    # demo
    ("demo --quick -o {d}/img.png", "not a folder"),
    ("demo --quick -o {d}/img.png/sub", "is a file"),
    ("demo --quick -o {d}/report --data {d}/missing", "no such folder"),
    ("demo --quick -o {d}/report --sweep {d}/missing", "no sweep results in"),
    # convert
    ("convert {d}/w.xml -o {d}/w.bin", "over the input"),
    ("convert {d}/w.xml -o {d}/w.xml", "over the input"),
    ("convert {d}/w.bin -o {d}/w.xml", "over the input"),
    ("convert {d}/ckpt.safetensors -o {d}/out.safetensors", "already a safetensors"),
    ("convert {d}/missing.net -o {d}/out.safetensors", "does not exist"),
    ("convert {d}/w.xml -o {d}/dir", "is a folder"),
    ("convert {d}/w.xml -o {d}/null", "squeezelab writes only regular files"),
    ("convert {d}/w.xml -o {d}/fifo", "a FIFO"),
    ("convert", "convert needs INPUT"),
    # predict
    (P.replace("ckpt", "nan"), "NaN"),
    ("squeezenet1_1 {d}/img.png --weights {d}", "is a folder"),
    (P + " --topk 0", "--topk"),
    (P + " --topk -1", "--topk"),
    (P + " --topk abc", "--topk"),
    ("squeezenet1_1 {d}/bomb.png " + W, "too large to decode"),
    ("squeezenet1_1 {d}/notimage.png " + W, "cannot read image"),
    ("squeezenet1_1 {d}/missing.png " + W, "does not exist"),
    ("squeezenet1_1 {d}/dir " + W, "is a folder"),
    ("squeezenet1_1 {d}/fifo " + W, "not a regular file"),
    ("squeezenet1_1 {d}/img.png --weights {d}/fifo", "not a regular file"),
    ("squeezenet1_1 {d}/nan.tif " + W, "NaN"),
    ("squeezenet1_1 {d}/img.png --weights {d}/header.sqz", "inconsistent header"),
    ("squeezenet1_1 {d}/img.png --weights {d}/lying.sqz", "inconsistent header"),
    ("sqnxt23_w1 {d}/img.png " + W, "are for squeezenet1_1"),
    ("squeezenet1_1 {d}/img.png --weights no_such_weights", "neither a weights file nor registered weights"),
    # eval
    ("eval squeezenet1_1 " + W + " --data {d}/data --json {d}/null", "character device"),
    ("eval squeezenet1_1 " + W + " --data {d}/data --json {d}/sock", "a socket"),
    ("eval squeezenet1_1 " + W + " --data {d}/data --json {d}/dir", "is a folder"),
    ("eval squeezenet1_1 " + W + " --data {d}/data --json {d}/ckpt.safetensors", "over the input"),
    ("eval squeezenet1_1 " + W + " --data {d}/data --json {d}/img.png/x.json", "is a file"),
    ("eval squeezenet1_1 " + W + " --data {d}/data --batch-size 0", "--batch-size"),
    ("eval squeezenet1_1 " + W + " --data {d}/data --workers -1", "--workers"),
    ("eval squeezenet1_1 " + W + " --data {d}/bombdata --workers 0 --no-progress --json {d}/r.json",
     "too large to decode"),
    ("eval squeezenet1_1 " + W + " --data {d}/missing", "does not exist"),
    ("eval squeezenet1_1 " + W + " --data cifar10:{d}/missing", "cifar10_test_jpeg.zip not found"),
    ("eval squeezenet1_1 " + W + " --data {d}/unreadable --workers 0 --no-progress", "cannot read image"),
    ("eval squeezenet1_1 --weights {d}/nan.safetensors --data {d}/data --json {d}/r.json", "NaN"),
    # simulate
    ("simulate sqnxt23_w1 --input-size 0", "--input-size"),
    ("simulate sqnxt23_w1 --input-size 99999", "--input-size"),
    ("simulate sqnxt23_w1 --json {d}/dir", "is a folder"),
    ("simulate sqnxt23_w1 --csv {d}/fifo", "a FIFO"),
    ("simulate sqnxt23_w1 --export-scalesim {d}/img.png", "not a folder"),
    ("search -o {d}/img.png --trials 1", "not a folder"),
    ("search -o {d}/out --min-proxy lots", "--min-proxy"),
    ("search -o {d}/out --proxy synflow", "--data"),
    ("search -o {d}/out --arrays 0,8", "positive integers"),
    ("simulate sqnxt23_w1 --dram-bw nan", "dram_bw"),
    ("simulate sqnxt23_w1 --dram-bw 1e-300", "dram_bw"),
    ("simulate sqnxt23_w1 --dram-bw inf", "dram_bw"),
    ("simulate sqnxt23_w1 --config {d}/latin1.json", "not UTF-8"),
    ("simulate sqnxt23_w1 --config {d}/deep.json", "nested too deeply"),
    ("simulate sqnxt23_w1 --config {d}/deep.yaml", "nested too deeply"),
    ("simulate sqnxt23_w1 --config {d}/list_preset.json", "unknown accelerator preset"),
    ("simulate sqnxt23_w1 --config {d}/inf_clock.json", "clock_hz"),
    ("simulate sqnxt23_w1 --config {d}/inf_energy.json", "energy cost dram"),
    ("simulate sqnxt23_w1 --config {d}/nan_energy.yaml", "energy cost mac"),
    ("simulate sqnxt23_w1 --config {d}/dir", "does not exist"),
    # train: argparse-level only
    ("train squeezenet1_1 --epochs 0", "--epochs"),
    ("train squeezenet1_1 --lr -1", "--lr"),
    ("train squeezenet1_1 --grad-clip -1", "--grad-clip"),
    ("train squeezenet1_1 --input-size 100000", "--input-size"),
    ("train squeezenet1_1 --lr nan", "--lr"),
    ("train squeezenet1_1 --in-chans 2", "--in-chans"),
    ("train squeezenet1_1 --model-kwargs [1]", "--model-kwargs"),
    ("train squeezenet1_1 --data-seed -1", "--data-seed"),
    ("train squeezenet1_1 --whiten-stem --pretrained squeezenet1_1.torchvision", "--whiten-stem initialises the stem"),
    ("train --resume {d}/foreign", "not a squeezelab training state"),
    ("train --resume {d}/no_keys", "not a squeezelab training state"),
    ("train --resume {d}/not_a_dict", "not a squeezelab training state"),
    ("train --resume {d}/not_torch", "state.pt"),
    ("train squeezenet1_1 -o {empty}", "argument 4 is empty (the value of -o)"),
    ("train squeezenet1_1 --output=", "the value of --output"),
    # train: data (tests/test_data_fingerprint.py and tests/test_data_integrity.py have more)
    ("train squeezenet1_1 --data digits:{d}/data -o {d}/run", "digits is scikit-learn's built-in set"),
    ("train squeezenet1_1 --data fashion-mnist:{d}/fmnist_badlabel -o {d}/run", "label 200 (image 1) is outside 0..9"),
    ("train squeezenet1_1 --data fashion-mnist:{d}/fmnist_overflow -o {d}/run", "does not match its IDX header"),
    ("train squeezenet1_1 --data {d}/unreadable --input-size 8 --epochs 1 --threads 1 --no-progress -o {d}/run",
     "none of the 8 training images"),
    ("train squeezenet1_1 --data {d}/unreadable --input-size 8 --epochs 1 --threads 1 --no-progress "
     "--data-loader batched -o {d}/run", "none of the 8 training images"),
    # sweep (more in tests/test_sweep.py)
    ("sweep --seeds 0 0 -o {d}/sweep", "seeds repeat"),
    ("sweep --experiments fire -o {d}/sweep", "fire"),
    ("sweep -o {d}/img.png", "not a folder"),
    ("sweep --report-only -o {d}/sweep", "no cached points"),
    # compress
    ("compress squeezenet1_1 --weights {d}/c.sqz -o {d}/c.sqz", "over the input"),
    ("compress squeezenet1_1 " + W + " -o {d}/o.sqz --bits 9", "--bits"),
    ("compress squeezenet1_1 " + W + " -o {d}/o.sqz --bits 0", "--bits"),
    ("compress squeezenet1_1 " + W + " -o {d}/o.sqz --density 0", "--density"),
    ("compress squeezenet1_1 " + W + " -o {d}/o.sqz --density 1.5", "--density"),
    ("compress squeezenet1_1 " + W + " -o {d}/o.sqz --density nan", "--density"),
    ("compress squeezenet1_1 " + W + " -o {d}/o.sqz --index-bits 0", "--index-bits"),
    ("compress squeezenet1_1 --weights {d}/nan.safetensors -o {d}/o.sqz", "NaN"),
    ("compress squeezenet1_1 " + W + " -o {d}/o.sqz --json {d}/dir", "is a folder"),
    ("compress squeezenet1_1 " + W + " -o {d}/o.sqz --save-masks {d}/o.sqz", "two different outputs"),
    ("compress squeezenet1_1 " + W + " -o {d}/o.sqz --masks {d}/masks.safetensors --density 0.5", "not both"),
    ("compress squeezenet1_1 " + W + " -o {d}/o.sqz --masks {d}/wrong_masks.safetensors --save-masks {d}/m2",
     "has shape (3, 3)"),
    ("compress squeezenet1_1 " + W + " -o {d}/o.sqz --masks {d}/missing.safetensors", "does not exist"),
    # quantize
    ("quantize squeezenet1_1 --weights {d}/model.onnx --calibration {d}/data -o {d}/q.onnx", "ONNX model"),
    ("quantize squeezenet1_1 " + W + " --calibration {d}/data -o {d}/q.onnx --max-images 0", "--max-images"),
    ("quantize squeezenet1_1 " + W + " --calibration {d}/data -o {d}/dir", "is a folder"),
    ("quantize squeezenet1_1 " + W + " --calibration {d}/data -o {d}/ckpt.safetensors", "over the input"),
    # lowrank
    ("lowrank squeezenet1_1 --weights {d}/model.onnx", "ONNX model"),
    ("lowrank squeezenet1_1 " + W + " -o {d}/ckpt.safetensors", "over the input"),
    ("lowrank squeezenet1_1 " + W + " --energy 0", "--energy"),
    ("lowrank squeezenet1_1 " + W + " --energy nan", "--energy"),
    ("lowrank squeezenet1_1 " + W + " --rank-fraction 2", "--rank-fraction"),
    # profile
    ("profile squeezenet1_1 --input-size 0", "--input-size"),
    ("profile squeezenet1_1 -o {d}/dir", "is a folder"),
    ("profile squeezenet1_1 --plot {d}/plot.txt", ".png"),
    ("profile squeezenet1_1 " + W + " -o {d}/ckpt.safetensors", "over the input"),
    # compare
    ("compare squeezenet1_1 --input-size -5", "--input-size"),
    ("compare squeezenet1_1 --input-size 1e9", "--input-size"),
    # claims
    ("claims -o {d}/report.txt", ".md"),
    ("claims -o {d}/img.png/report.md", "is a file"),
    ("claims -o {d}/dir.md", "is a folder"),
    # export
    ("export squeezenet1_1 -o {d}/dir", "is a folder"),
    ("export squeezenet1_1 " + W + " -o {d}/ckpt.safetensors", "over the input"),
    ("export squeezenet1_1 --input-size 0", "--input-size"),
    ("export squeezenet1_1 --input-size 8 -o {d}/x.onnx", "minimum"),
    ("export squeezenet1_1 --weights {d}/nan.safetensors -o {d}/x.onnx", "NaN"),
    ("export squeezenet1_1 --format bogus", "--format"),
    # bench
    ("bench squeezenet1_1 --threads 0", "--threads"),
    ("bench squeezenet1_1 --reps 2", "--reps"),
    ("bench squeezenet1_1 --max-seconds -1", "--max-seconds"),
    ("bench squeezenet1_1 --batch 0", "--batch"),
    ("bench squeezenet1_1 --json {d}/dir", "is a folder"),
    ("bench squeezenet1_1 --batch 65536 --input-size 2048", "lower --batch or --input-size"),
    ("bench squeezenet1_1 --weights squeezenet1_1.cifar10 --backends torchvision", "torchvision has no model"),
    # any command: empty values, names with line breaks (shown as \\n, on one line)
    ("demo --quick -o {empty}", "is empty"),
    ("profile squeezenet1_1 -o {empty}", "is empty"),
    ("export squeezenet1_1 -o {empty}", "is empty"),
    ("predict squeezenet1_1 {d}/two{nl}lines.png " + W, "two\\nlines.png does not exist"),
    ("convert {d}/missing{nl}name.net -o {d}/out.safetensors", "missing\\nname.net does not exist"),
]
PREDICT_FIRST = {i for i, (argv, _) in enumerate(CASES) if argv.startswith(("squeezenet1_1 ", "sqnxt23_w1 "))}


def snapshot(*roots: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under ``roots``: (mode, size, mtime_ns), without following links."""
    found = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                st = os.lstat(os.path.join(folder, name))
                found[os.path.join(folder, name)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return found


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code: int, err: str, expected: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, f"exit {code}, stderr {err!r}"
    assert "Traceback" not in err
    assert len(lines) == 1, f"expected one stderr line, got {lines}"
    assert lines[0].startswith("squeezelab") and ": error: " in lines[0]
    assert expected.lower() in lines[0].lower(), lines[0]


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c[0].split(" {d}")[0][:40] or "empty" for c in CASES])
def test_bad_input(index: int, workdir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    argv_text, expected = CASES[index]
    argv = [a.format(d=workdir, empty="", nl="\n") for a in argv_text.split()]
    if index in PREDICT_FIRST:
        argv = ["predict", *argv]
    monkeypatch.chdir(tmp_path)  # default outputs (export's MODEL.onnx, demo_report/) would land here
    before = snapshot(workdir, tmp_path)
    code, _, err = run_cli(argv, capsys)
    assert_refused(code, err, expected)
    assert snapshot(workdir, tmp_path) == before, "a bad input changed the working folder"


def test_case_table_covers_every_command() -> None:
    from squeezelab.cli.main import COMMANDS

    commands = {("predict" if i in PREDICT_FIRST else (c.split() or ["-"])[0]) for i, (c, _) in enumerate(CASES)}
    assert set(COMMANDS) <= commands and len(CASES) >= 60


def test_prototxt_nested_too_deeply_is_one_line(workdir: Path) -> None:
    """A prototxt nested 100,000 deep (Caffe's are 3) is refused, not a RecursionError."""
    from squeezelab.errors import SqueezelabError
    from squeezelab.weights.caffe import read_prototxt

    with pytest.raises(SqueezelabError, match="is not a valid prototxt \\(nested more than 64 deep\\)"):
        read_prototxt(workdir / "deep.prototxt")


def test_weights_dir_env_pointing_at_a_file(workdir: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SQUEEZELAB_WEIGHTS_DIR", str(workdir / "img.png"))
    before = snapshot(workdir)
    code, _, err = run_cli(["predict", "squeezenet1_1", str(workdir / "img.png"), "--weights",
                            "squeezenet1_1.torchvision"], capsys)
    assert_refused(code, err, "SQUEEZELAB_WEIGHTS_DIR")
    assert snapshot(workdir) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder(workdir: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, _, err = run_cli(["profile", "squeezenet1_1", "-o", str(folder / "p.txt")], capsys)
        assert_refused(code, err, "not writable")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_file_size_limit_at_write_time_is_one_line(tmp_path: Path) -> None:
    """EFBIG while writing (``ulimit -f``): one line, exit 2, no partial or temporary file left."""
    script = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048)); "
              "from squeezelab.cli.main import main; sys.exit(main(sys.argv[1:]))")
    out = tmp_path / "profile.csv"
    proc = subprocess.run([sys.executable, "-c", script, "profile", "squeezenet1_1", "--format", "csv", "-o",
                           str(out)], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "File too large" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_sixteen_bit_grey_png_keeps_its_range(tmp_path: Path) -> None:
    """A 16-bit greyscale PNG reaches the model as the same picture as its 8-bit version (not all white)."""
    from squeezelab.data.preprocess import read_image

    levels = np.random.default_rng(1).integers(0, 256, (40, 40)).astype(np.uint16)
    Image.fromarray(levels * 257).save(tmp_path / "g16.png")
    Image.fromarray(levels.astype(np.uint8)).save(tmp_path / "g8.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    pre = Preprocess(crop=32, resize=32)
    assert torch.equal(pre(read_image(tmp_path / "g16.png")), pre(read_image(tmp_path / "g8.png")))


@pytest.mark.parametrize("mode", ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr",
                                  "LAB", "HSV", "I", "I;16", "I;16B", "F"])
def test_every_pil_mode_reaches_the_model_in_range(mode: str) -> None:
    """Any mode becomes 8-bit 'L' or 'RGB'; white stays white (opaque or fully transparent) and black stays black."""
    from squeezelab.data.preprocess import to_model_mode

    white = {"1": 1, "I": 65535, "I;16": 65535, "I;16B": 65535, "F": 1.0, "P": 0, "PA": (0, 0),
             "LAB": (255, 128, 128)}  # Pillow stores a* and b* offset by 128
    image = Image.new(mode, (6, 6))
    if mode in white:
        image = Image.new(mode, (6, 6), white[mode])
        if mode.startswith("P"):
            image.putpalette([255, 255, 255] * 256)
    elif mode not in ("CMYK", "LA", "La", "RGBA", "RGBa", "YCbCr", "HSV"):
        image = Image.new(mode, (6, 6), (255,) * len(mode) if mode != "L" else 255)
    converted = to_model_mode(image)
    assert converted.mode in ("L", "RGB")
    pixels = np.asarray(converted)
    if mode == "YCbCr":
        assert pixels.max() <= 255
    elif mode == "LAB":
        assert (pixels >= 254).all()
    elif mode == "HSV":
        assert (pixels == 0).all()
    else:  # white, a fully transparent pixel composited on white, or CMYK 0,0,0,0
        assert (pixels == 255).all(), (mode, pixels.min())


def test_eval_warns_when_folder_names_are_not_imagenet_classes(tmp_path: Path) -> None:
    from squeezelab.inference.evaluate import scan_images
    from squeezelab.data.imagenet import imagenet_categories, imagenet_wnids

    meta = CheckpointMeta(architecture="squeezenet1_1", num_classes=1000, categories=imagenet_categories())
    for name in ("cats", "dogs", imagenet_wnids()[3]):
        (tmp_path / name).mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / name / "x.png")
    found = scan_images(tmp_path, meta)
    assert found.layout == "imagefolder (sorted folders)"
    assert len(found.warnings) == 1 and "2 of 3 folder names" in found.warnings[0] and "'cats'" in found.warnings[0]
    (tmp_path / "cats").rename(tmp_path / imagenet_wnids()[5])
    (tmp_path / "dogs").rename(tmp_path / imagenet_wnids()[7])
    assert not scan_images(tmp_path, meta).warnings


def test_parity_check_fails_on_nan(monkeypatch, tmp_path: Path) -> None:
    """``max abs diff nan`` is a failure, not a pass (NaN compares False with any tolerance)."""
    from squeezelab.errors import SqueezelabError
    from squeezelab.export import formats

    monkeypatch.setattr(formats, "load_exported", lambda path, fmt: lambda x: torch.full((x.shape[0], 10), np.nan))
    model = build_model("squeezenet1_1", num_classes=10)
    with pytest.raises(SqueezelabError, match="differ from eager by nan"):
        formats.check_parity(model, tmp_path / "m.onnx", "onnx", input_size=32, batch=1)


def test_interrupted_parity_check_keeps_no_file(monkeypatch, tmp_path: Path, capsys) -> None:
    """An export whose parity check is interrupted leaves neither the file nor a temporary file."""
    from squeezelab.cli import export as export_cli

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_cli, "check_parity", interrupt)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["export", "squeezenet1_1", "--input-size", "32", "-o", "m.onnx"], capsys)
    assert code == 130 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), OSError(122, "Disk quota exceeded")])
def test_write_error_keeps_the_old_file_and_no_temporary(tmp_path: Path, error: OSError) -> None:
    """A write that fails half-way (disk full, quota) is one line; the old file and the folder are untouched."""
    from squeezelab.errors import SqueezelabError
    from squeezelab.io import atomic_path

    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(SqueezelabError, match=f"cannot write {target}: {error.strerror}") as info:
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new")
            raise error
    assert "\n" not in str(info.value)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


#: Paths inside a ``chmod 000`` folder ({L}; {o} is a writable output folder), one case per command and role:
#: (argv, environment) -> exit 2 and one line saying "Permission denied" and naming the path.
PERMISSION_CASES = [
    ("predict " + P.replace("{d}/img.png", "{L}/img.png"), {}),
    ("predict squeezenet1_1 {d}/img.png --weights {L}/ckpt.safetensors", {}),
    ("predict squeezenet1_1 {d}/img.png --weights squeezenet1_1.cifar10", {"SQUEEZELAB_WEIGHTS_DIR": "{L}"}),
    ("eval squeezenet1_1 " + W + " --data {L} --workers 0", {}),
    ("eval squeezenet1_1 " + W + " --data {d}/data --workers 0 --json {L}/r.json", {}),
    ("convert {L}/w.xml -o {o}/w.safetensors", {}),
    ("convert {d}/w.xml -o {L}/w.safetensors", {}),
    ("simulate sqnxt23_w1 --config {L}/c.json", {}),
    ("simulate sqnxt23_w1 --json {L}/s.json", {}),
    ("train squeezenet1_1 --data {L} --epochs 1 -o {o}/run", {}),
    ("train squeezenet1_1 --epochs 1 --input-size 8 -o {L}/run", {}),
    ("train --resume {L}/run", {}),
    ("sweep --experiments bypass --seeds 0 --max-points 1 -o {L}/sweep", {}),
    ("sweep --report-only -o {L}/sweep", {}),
    ("compress squeezenet1_1 " + W + " -o {L}/o.sqz", {}),
    ("compress squeezenet1_1 " + W + " --masks {L}/m.safetensors -o {o}/o.sqz", {}),
    ("quantize squeezenet1_1 " + W + " --calibration {L} -o {o}/q.onnx", {}),
    ("lowrank squeezenet1_1 " + W + " -o {L}/l.safetensors", {}),
    ("profile squeezenet1_1 -o {L}/p.txt", {}),
    ("claims -o {L}/claims.md", {}),
    ("export squeezenet1_1 --format torchscript -o {L}/m.pt", {}),
    ("bench squeezenet1_1 --json {L}/b.json", {}),
    ("demo --quick -o {L}/report", {}),
    ("demo --quick -o {o}/report --data {L}", {}),
]


def _without_file_permission_override() -> list[str]:
    """A command prefix that runs this interpreter held to the permission bits like a non-root user.

    As a non-root user: the interpreter itself. As root: ``setpriv`` drops the two capabilities that let
    root ignore permission bits (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH); ``os.setuid`` to another user is
    not used because the interpreter may live where only root can read it (a pyenv under /root, mode 700).
    """
    if os.geteuid() != 0:
        return [sys.executable]
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without util-linux's setpriv: cannot drop the permission override")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", sys.executable]


def _run_held_to_permissions(steps: list, folder: Path, cwd: Path) -> list[dict]:
    """``run_commands`` of ``steps`` (from this checkout's ``src``, one thread) as a user the permission bits hold."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return run_commands(_without_file_permission_override(), steps, folder, cwd, env)


def _permission_line_problem(argv: str, result: dict, path: Path) -> Optional[str]:
    """What is wrong with ``result`` unless it is exit 2 and one 'Permission denied' line naming ``path``."""
    lines = result["err"].strip().splitlines()
    if result["code"] == 2 and len(lines) == 1 and "permission denied" in lines[0].lower() and str(path) in lines[0]:
        return None
    return f"{argv}: exit {result['code']}: {result['err'][-600:]}"


def test_paths_in_an_unreadable_folder_are_one_line(workdir: Path, tmp_path: Path) -> None:
    """Any path inside a ``chmod 000`` folder, for every command that reads or writes one: exit 2, one line."""
    locked, out = tmp_path / "locked", tmp_path / "out"
    out.mkdir()
    locked.mkdir()
    for name in ("img.png", "ckpt.safetensors", "w.xml"):
        (locked / name).write_bytes((workdir / name).read_bytes())
    (locked / "c.json").write_text("{}")
    (locked / "m.safetensors").write_bytes((workdir / "masks.safetensors").read_bytes())
    locked.chmod(0)
    fill = {"d": str(workdir), "L": str(locked), "o": str(out)}
    steps = [{"argv": [a.format(**fill) for a in argv.split()], "env": {k: v.format(**fill) for k, v in env.items()}}
             for argv, env in PERMISSION_CASES]
    try:
        results = _run_held_to_permissions(steps, tmp_path, out)
    finally:
        locked.chmod(0o755)
    wrong = [problem for (argv, _), result in zip(PERMISSION_CASES, results)
             if (problem := _permission_line_problem(argv, result, locked))]
    assert not wrong, "\n".join(wrong)
    assert sorted(p.name for p in locked.iterdir()) == ["c.json", "ckpt.safetensors", "img.png", "m.safetensors",
                                                        "w.xml"]


def test_an_unreadable_folder_inside_a_class_is_one_line(workdir: Path, tmp_path: Path) -> None:
    """A class folder's sub-folder that cannot be listed stops eval and train with one line naming it (exit 2),
    instead of its images being left out silently (``Path.rglob`` skips what it cannot list)."""
    data, out = tmp_path / "classes", tmp_path / "out"
    out.mkdir()
    for name in ("a", "b"):
        (data / name / "more").mkdir(parents=True)
        (data / name / "1.png").write_bytes((workdir / "img.png").read_bytes())
        (data / name / "more" / "2.png").write_bytes((workdir / "img.png").read_bytes())
    locked = data / "b" / "more"
    locked.chmod(0)
    fill = {"d": str(workdir), "data": str(data), "o": str(out)}
    commands = ["eval squeezenet1_1 " + W + " --data {data} --workers 0",
                "train squeezenet1_1 --data {data} --epochs 1 --input-size 8 --threads 1 -o {o}/run"]
    steps = [[a.format(**fill) for a in argv.split()] for argv in commands]
    try:
        results = _run_held_to_permissions(steps, tmp_path, out)
    finally:
        locked.chmod(0o755)
    wrong = [problem for argv, result in zip(commands, results)
             if (problem := _permission_line_problem(argv, result, locked))]
    assert not wrong, "\n".join(wrong)
    assert not (out / "run").exists()

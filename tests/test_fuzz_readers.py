"""Property test: random and mutated bytes into every reader give a valid result or one ``SqueezelabError`` line.

Readers: the Deep Compression ``.net``, OpenVINO ``.xml`` + ``.bin``, ncnn ``.param`` + ``.bin``
(each both as random bytes and as the real upstream file with a few bytes changed), ``.sqz``
(random bytes, and a real file whose bytes are changed and whose CRC is then fixed so the
damage reaches the header and payload decoders), safetensors checkpoints and image files (random
bytes, and random small images in every PIL mode and format, truncated or not). Never another
exception: that would be a traceback for the user.
"""

from __future__ import annotations

import functools
import io
import itertools
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from squeezelab.data.preprocess import Preprocess, read_image
from squeezelab.errors import SqueezelabError
from squeezelab.weights import load_weights
from squeezelab.weights.checkpoint import CheckpointMeta, save_checkpoint

FUZZ = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
_names = itertools.count()


def outcome(read, *args):
    """Call a reader: its result, or None after a one-line SqueezelabError; any other exception fails the test."""
    try:
        return read(*args)
    except SqueezelabError as exc:
        assert str(exc).strip() and "\n" not in str(exc), repr(exc)
        return None


def check_weights(result) -> None:
    if result is not None:
        state, meta = result
        assert isinstance(meta, CheckpointMeta) and all(isinstance(t, torch.Tensor) for t in state.values())
        assert all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point())


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    buf = bytearray(data)
    for position, value in edits:
        buf[position % len(buf)] = value
    return bytes(buf[:cut] if cut is not None else buf)


edits_st = st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 255)), min_size=1, max_size=8)
cut_st = st.one_of(st.none(), st.integers(0, 1 << 30))


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def fresh(folder: Path, suffix: str) -> Path:
    return folder / f"f{next(_names)}{suffix}"


@functools.lru_cache(maxsize=None)
def upstream(name: str) -> Path:
    from squeezelab.weights.registry import fetch_weights

    try:
        return fetch_weights(name, allow_download=False)
    except SqueezelabError as exc:
        pytest.skip(f"upstream weights {name} not available offline ({exc})")


@FUZZ
@given(data=st.binary(max_size=4096), suffix=st.sampled_from([".net", ".xml", ".bin", ".param", ".sqz",
                                                              ".safetensors", ".onnx", ""]))
def test_random_bytes_as_weights(fuzz_dir: Path, data: bytes, suffix: str) -> None:
    path = fresh(fuzz_dir, suffix)
    path.write_bytes(data)
    check_weights(outcome(load_weights, path))


@FUZZ
@given(head=st.binary(min_size=8, max_size=64), partner=st.binary(max_size=512),
       kind=st.sampled_from([(".xml", b"<?xml version='1.0'?><net><layers>"), (".param", b"7767517\n")]))
def test_random_partner_files(fuzz_dir: Path, head: bytes, partner: bytes, kind: tuple[str, bytes]) -> None:
    """Text that starts like an OpenVINO / ncnn description, with a random .bin beside it."""
    path = fresh(fuzz_dir, kind[0])
    path.write_bytes(kind[1] + head)
    path.with_suffix(".bin").write_bytes(partner)
    check_weights(outcome(load_weights, path))


@settings(FUZZ, max_examples=12)
@given(edits=edits_st, cut=cut_st, which=st.sampled_from(["squeezenet1_0.deep_compression", "squeezenet1_1.caffe",
                                                         "squeezenet1_1.torchvision"]),
       target=st.sampled_from(["main", "bin"]))
def test_mutated_upstream_files(fuzz_dir: Path, edits, cut, which: str, target: str) -> None:
    """The real upstream files with a few bytes changed (or cut short): still a result or one line."""
    source = upstream(which)
    path = fresh(fuzz_dir, source.suffix)
    files = {"main": (source, path)}
    if source.suffix != ".net":
        files["bin"] = (source.with_suffix(".bin"), path.with_suffix(".bin"))
    for key, (src, dst) in files.items():
        data = src.read_bytes()
        dst.write_bytes(mutate(data, edits, cut) if key == target or len(files) == 1 else data)
    check_weights(outcome(load_weights, path))
    for _, dst in files.values():
        dst.unlink()


@pytest.fixture(scope="module")
def real_sqz(fuzz_dir: Path) -> bytes:
    from squeezelab.compress.deep import compress_state_dict
    from squeezelab.compress.sqz import encode_sqz

    torch.manual_seed(0)
    state = {"conv.weight": torch.randn(8, 4, 3, 3), "conv.bias": torch.randn(8), "fc.weight": torch.randn(5, 8)}
    meta = CheckpointMeta(architecture="squeezenet1_1", num_classes=5, preprocess=Preprocess(crop=32, resize=32))
    return encode_sqz(compress_state_dict(state, bits=4, density=0.5), meta)


@FUZZ
@given(edits=edits_st, cut=cut_st, fix_crc=st.booleans())
def test_mutated_sqz(fuzz_dir: Path, real_sqz: bytes, edits, cut, fix_crc: bool) -> None:
    from squeezelab.compress.sqz import read_sqz

    data = mutate(real_sqz[:-4], edits, cut)
    data += struct.pack("<I", zlib.crc32(data)) if fix_crc else real_sqz[-4:]
    path = fresh(fuzz_dir, ".sqz")
    path.write_bytes(data)
    check_weights(outcome(read_sqz, path))


HEADER_PATHS = ["format", "bits", "index_bits", "density", "meta", "tensors", "streams", "meta.architecture",
                "meta.num_classes", "meta.preprocess", "meta.model_kwargs", "tensors.0", "tensors.0.name",
                "tensors.0.shape", "tensors.0.bits", "tensors.0.entries", "tensors.0.layout", "tensors.0.kind",
                "tensors.0.codebook_offset", "tensors.1.dtype", "tensors.1.shape", "tensors.1.offset",
                "tensors.1.nbytes", "streams.codes", "streams.codes.count", "streams.codes.nbits",
                "streams.codes.alphabet", "streams.codes.nbytes", "streams.gaps.offset", "streams.gaps.lengths_offset",
                "streams.gaps.count"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 300) | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)


def set_path(tree, path: str, value) -> None:
    *parents, last = path.split(".")
    for part in parents:
        tree = tree[int(part)] if isinstance(tree, list) else tree.get(part)
        if not isinstance(tree, (dict, list)):
            return
    if isinstance(tree, list):
        tree[int(last) % len(tree)] = value
    else:
        tree[last] = value


@FUZZ
@given(changes=st.lists(st.tuples(st.sampled_from(HEADER_PATHS), json_values), min_size=1, max_size=3),
       whole=st.one_of(st.none(), json_values))
def test_sqz_with_valid_crc_and_wrong_header(fuzz_dir: Path, real_sqz: bytes, changes, whole) -> None:
    """A valid magic and CRC around a header with some fields replaced by random JSON (or a random header)."""
    import json

    from squeezelab.compress.sqz import _PREFIX, read_sqz

    _, _, head_len = _PREFIX.unpack_from(real_sqz)
    header = json.loads(zlib.decompress(real_sqz[_PREFIX.size:_PREFIX.size + head_len]))
    for path, value in changes:
        set_path(header, path, value)
    head = zlib.compress(json.dumps(header if whole is None else whole).encode())
    body = _PREFIX.pack(b"SQZLAB\x00", 1, len(head)) + head + real_sqz[_PREFIX.size + head_len:-4]
    path = fresh(fuzz_dir, ".sqz")
    path.write_bytes(body + struct.pack("<I", zlib.crc32(body)))
    check_weights(outcome(read_sqz, path))


@pytest.fixture(scope="module")
def real_checkpoint(fuzz_dir: Path) -> bytes:
    path = fuzz_dir / "real.safetensors"
    meta = CheckpointMeta(architecture="squeezenet1_1", num_classes=5)
    save_checkpoint(path, {"a.weight": torch.randn(3, 2), "a.bias": torch.zeros(3)}, meta)
    return path.read_bytes()


@FUZZ
@given(edits=edits_st, cut=cut_st, meta=st.dictionaries(st.sampled_from(["architecture", "num_classes", "in_chans",
                                                                         "model_kwargs", "preprocess", "categories"]),
                                                        st.text(max_size=12), max_size=3))
def test_mutated_safetensors(fuzz_dir: Path, real_checkpoint: bytes, edits, cut, meta: dict[str, str]) -> None:
    """Changed bytes in a real checkpoint, and checkpoints whose metadata strings are random."""
    path = fresh(fuzz_dir, ".safetensors")
    path.write_bytes(mutate(real_checkpoint, edits, cut))
    check_weights(outcome(load_weights, path))
    from safetensors.torch import save_file

    strings = {**CheckpointMeta(architecture="squeezenet1_1", num_classes=5).to_strings(), **meta}
    save_file({"w": torch.ones(2)}, str(path), metadata=strings)
    check_weights(outcome(load_weights, path))


MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "I", "I;16", "F"]
FORMATS = {"PNG": (".png", {"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"}),
           "TIFF": (".tif", set(MODES) - {"P"}),
           "BMP": (".bmp", {"1", "L", "P", "RGB"}),
           "GIF": (".gif", {"L", "P"}),
           "JPEG": (".jpg", {"L", "RGB", "CMYK"}),
           "WEBP": (".webp", {"RGB", "RGBA"})}


def check_image(path: Path) -> None:
    image = outcome(read_image, path)
    if image is not None:
        assert image.mode in ("L", "RGB")
        tensor = Preprocess(crop=8, resize=8)(image)
        assert tensor.shape == (3, 8, 8) and bool(torch.isfinite(tensor).all())


@FUZZ
@given(data=st.binary(max_size=2048), suffix=st.sampled_from([".png", ".jpg", ".gif", ".tif", ".bmp", ".webp"]))
def test_random_bytes_as_image(fuzz_dir: Path, data: bytes, suffix: str) -> None:
    path = fresh(fuzz_dir, suffix)
    path.write_bytes(data)
    check_image(path)


@settings(FUZZ, max_examples=60)
@given(mode=st.sampled_from(MODES), fmt=st.sampled_from(sorted(FORMATS)), size=st.tuples(st.integers(1, 12),
                                                                                          st.integers(1, 12)),
       seed=st.integers(0, 2**16), damage=st.one_of(st.none(), st.tuples(edits_st, cut_st)))
def test_random_small_images(fuzz_dir: Path, mode: str, fmt: str, size: tuple[int, int], seed: int, damage) -> None:
    """A random small image in a random mode and format, written intact or damaged, read back."""
    suffix, modes = FORMATS[fmt]
    if mode not in modes:
        mode = sorted(modes)[seed % len(modes)]
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    if mode in ("I", "I;16", "F"):
        dtype = {"I": np.int32, "I;16": np.uint16, "F": np.float32}[mode]
        top = {"I": 70000, "I;16": 65536, "F": 2}[mode]
        image = Image.fromarray(rng.integers(0, top, (size[1], size[0])).astype(dtype), mode=None)
        if mode == "F":
            image = Image.fromarray(rng.random((size[1], size[0]), dtype=np.float32) * 3)
    elif mode == "P":
        image = rgb.convert("P")
    else:
        image = rgb.convert(mode)
    buffer = io.BytesIO()
    try:
        image.save(buffer, fmt)
    except (OSError, ValueError, KeyError):
        return  # PIL cannot write this combination; nothing to read back
    data = buffer.getvalue()
    if damage is not None:
        data = mutate(data, *damage)
    path = fresh(fuzz_dir, suffix)
    path.write_bytes(data)
    check_image(path)

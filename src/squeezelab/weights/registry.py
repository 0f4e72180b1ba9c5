"""The pretrained-weights registry, timm style: a name -> upstream files, architecture, preprocessing.

``fetch_weights(name)`` returns the local path of an entry's main file. It looks,
in order, in the local folders (``$SQUEEZELAB_WEIGHTS_DIR``, ``os.pathsep``
separated, then the upstream files bundled in ``squeezelab/weights/upstream`` and
the checkpoints squeezelab trained, bundled in ``squeezelab/weights/trained``),
then in the cache (``$SQUEEZELAB_CACHE``, else ``$XDG_CACHE_HOME/squeezelab`` or
``~/.cache/squeezelab``), then downloads the upstream URL into the cache. Every
file is checked against its sha256 wherever it comes from; a download is
streamed to a temporary file and renamed into place only once its hash matches.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from ..data.preprocess import CAFFE, CAFFE_SQUASH_227, CIFAR10_32, CIFAR10_CLASSES, TORCHVISION, Preprocess
from ..errors import SqueezelabError
from ..io import PathLike, atomic_path, sha256_file
from ..data.imagenet import imagenet_categories

WEIGHTS_DIR_ENV = "SQUEEZELAB_WEIGHTS_DIR"
CACHE_ENV = "SQUEEZELAB_CACHE"
#: The upstream files shipped as package data (their source and licence: ``upstream/SOURCE.md``).
BUNDLED_DIR = Path(__file__).resolve().parent / "upstream"
#: Checkpoints trained by squeezelab itself, shipped as package data (recipe and log: ``trained/TRAINED.md``).
TRAINED_DIR = Path(__file__).resolve().parent / "trained"


@dataclass(frozen=True)
class WeightFile:
    """One weights file: its name, raw URL (repository @ commit : path) and sha256.

    ``url`` is None for the checkpoints squeezelab trained: they exist only as package data.
    """

    filename: str
    url: Optional[str]
    sha256: str
    size: int


@dataclass(frozen=True)
class WeightsEntry:
    """A registered set of pretrained weights, and its pretrained config (timm's ``PretrainedCfg``).

    ``files[0]`` is the one the loader opens. ``preprocess`` (resize mode and size, interpolation and
    antialias, crop, channel order, value scale, mean, std) and ``categories`` are the single source of
    what the weights expect; ``metrics`` are the accuracies that preprocessing reproduces on ``dataset``.
    """

    name: str
    architecture: str
    source_format: str
    files: tuple[WeightFile, ...]
    preprocess: Preprocess
    description: str
    license: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    categories: tuple[str, ...] = field(default_factory=lambda: tuple(imagenet_categories()), repr=False)
    dataset: str = "imagenet"


def _github(repo: str, commit: str, path: str) -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


def _trained_on_cifar10(architecture: str, title: str, recipe: str, sha256: str, size: int, *, top1: float,
                        top5: float, top1_flip: float, top5_flip: float,
                        model_kwargs: Optional[dict[str, Any]] = None) -> WeightsEntry:
    """A checkpoint ``squeezelab train ARCH --data cifar10:DIR`` made with the small-input stem (``recipe`` says
    how), shipped as package data (no URL); ``model_kwargs``: the checkpoint's own (``small_input`` plus any
    training override); ``top1``/``top5``: the run's last epoch on the 10,000 test images, ``*_flip`` the same
    with ``squeezelab eval --tta flip`` (weights/trained/TRAINED.md has each recipe and log)."""
    return WeightsEntry(
        name=f"{architecture}.cifar10", architecture=architecture, model_kwargs={"small_input": True,
                                                                                 **(model_kwargs or {})},
        source_format="safetensors", files=(WeightFile(f"{architecture}.cifar10.safetensors", None, sha256, size),),
        preprocess=CIFAR10_32, categories=CIFAR10_CLASSES, dataset="cifar10",
        description=f"{title} (small-input stem) trained by squeezelab on CIFAR-10: {recipe}",
        license="BSD-3-Clause (squeezelab)",
        metrics={"cifar10_test_top1": top1, "cifar10_test_top5": top5,
                 "cifar10_test_top1_flip": top1_flip, "cifar10_test_top5_flip": top5_flip})


_DC = ("songhan/SqueezeNet-Deep-Compression", "fb13faa2")
_OV = ("OmniXRI/OpenVINO_OpenCV_Squeezenet", "c2c0e5e0")
_NCNN = ("zchrissirhcz/squeezenet-ncnn-pnnx-opencv-cpp", "0392c1c4")

_ENTRIES = (
    WeightsEntry(
        name="squeezenet1_0.deep_compression",
        architecture="squeezenet1_0",
        model_kwargs={"conv10_padding": 1},
        source_format="deep-compression",
        files=(WeightFile("compressed_SqueezeNet.net", _github(*_DC, "compressed_SqueezeNet.net"),
                          "e4ab6960ae8cd81505e1c2136921201507e930966c53deaf15862a395b3a3261", 675_763),),
        preprocess=CAFFE,
        description="SqueezeNet v1.0 from the paper, Deep-Compressed (33% dense, 8-bit codebooks), 0.66 MB",
        license="BSD (songhan/SqueezeNet-Deep-Compression)",
        # SqueezeNet paper Table 2 (ImageNet val); samples100 = shared/data imagenet_samples_100 with this
        # preprocess (benchmarks/results/resize_antialias.json; 64 / 83 with PIL's antialiased resize).
        metrics={"imagenet_top1": 57.5, "imagenet_top5": 80.3, "samples100_top1": 64.0, "samples100_top5": 86.0},
    ),
    WeightsEntry(
        name="squeezenet1_1.caffe",
        architecture="squeezenet1_1",
        source_format="openvino",
        files=(WeightFile("squeezenet1.1.xml", _github(*_OV, "squeezenet1.1.xml"),
                          "238be462aadc8e5665f47037aa22c47d67f5ef7da8e73bd03380edf558b9c7f4", 38_023),
               WeightFile("squeezenet1.1.bin", _github(*_OV, "squeezenet1.1.bin"),
                          "4405e29f9d7b91fbd950358c470eed04edfe82a14d766a948add81493803f563", 2_470_992)),
        preprocess=CAFFE_SQUASH_227,
        description="DeepScale SqueezeNet v1.1 caffemodel as OpenVINO IR v6 FP16",
        license="BSD-2-Clause (forresti/SqueezeNet)",
        # forresti/SqueezeNet v1.1 README: v1.0 accuracy (paper Table 2); samples100 measured with this
        # preprocess (benchmarks/results/resize_antialias.json; 68 / 88 with PIL's antialiased resize).
        metrics={"imagenet_top1": 57.5, "imagenet_top5": 80.3, "samples100_top1": 70.0, "samples100_top5": 90.0},
    ),
    WeightsEntry(
        name="squeezenet1_1.torchvision",
        architecture="squeezenet1_1",
        source_format="ncnn",
        files=(WeightFile("squeezenet_v1.1.ncnn.param", _github(*_NCNN, "squeezenet_v1.1.ncnn.param"),
                          "7dfb3045edf49f199ccc03dfc262956c6b9f38089b14d32a273aa8463c49c46b", 4_629),
               WeightFile("squeezenet_v1.1.ncnn.bin", _github(*_NCNN, "squeezenet_v1.1.ncnn.bin"),
                          "3de9f2f9dbbbc4468fe452d9033300633b60748073a9509a7ea882caec57e544", 2_478_984)),
        preprocess=TORCHVISION,
        description="torchvision squeezenet1_1 ImageNet weights, exported by pnnx to ncnn FP16",
        license="BSD-3-Clause (torchvision)",
        # torchvision SqueezeNet1_1_Weights.IMAGENET1K_V1 (ImageNet val); samples100 measured with this
        # preprocess (benchmarks/results/resize_antialias.json).
        metrics={"imagenet_top1": 58.178, "imagenet_top5": 80.624, "samples100_top1": 63.0, "samples100_top5": 89.0},
    ),
    _trained_on_cifar10("squeezenet1_1", "squeezenet1_1",
                        "fast recipe at batch 64 with Cutout 8, 100 epochs, then a 60-epoch warm restart with EMA",
                        "2c65e1ed8b6a9fdc2a5e25085b994146786fae0b8f9537afe08a18fead86df7a", 2_916_040,
                        top1=86.23, top5=99.27, top1_flip=87.01, top5_flip=99.43),
    _trained_on_cifar10("sqnxt23v5_w1", "1.0-SqNxt-23v5",
                        "fast recipe with weight EMA 0.999, 100 epochs, then two 60-epoch warm restarts with Cutout 8 "
                        "and 30 epochs of weight averaging (--swa) at a constant rate",
                        "6cb474c45326a339d79be304730c2c7f9c6c508130a30405c18da6a897d55ef9", 3_332_280,
                        top1=90.01, top5=99.39, top1_flip=90.64, top5_flip=99.45),
)

WEIGHTS: dict[str, WeightsEntry] = {entry.name: entry for entry in _ENTRIES}


def list_weights() -> list[str]:
    """Registered weight names, sorted."""
    return sorted(WEIGHTS)


def get_weights_entry(name: str) -> WeightsEntry:
    """The entry for a registered name; a one-line error listing the names otherwise."""
    entry = WEIGHTS.get(name.strip().lower())
    if entry is None:
        raise SqueezelabError(f"{name!r} is neither a file nor registered weights; registered: "
                              f"{', '.join(list_weights())}")
    return entry


def entry_for_format(source_format: str) -> Optional[WeightsEntry]:
    """The registered entry of a source format (its architecture and preprocessing)."""
    return next((e for e in _ENTRIES if e.source_format == source_format), None)


def entry_for_sha256(digest: str) -> Optional[WeightsEntry]:
    """The registered entry one of whose files has this sha256."""
    return next((e for e in _ENTRIES for f in e.files if f.sha256 == digest), None)


def cache_dir() -> Path:
    """Where downloads go: ``$SQUEEZELAB_CACHE``, else ``$XDG_CACHE_HOME/squeezelab`` or ``~/.cache/squeezelab``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "squeezelab"


def local_weight_dirs() -> list[Path]:
    """Folders searched before the cache: ``$SQUEEZELAB_WEIGHTS_DIR`` entries, then the bundled upstream files."""
    dirs = [Path(p) for p in os.environ.get(WEIGHTS_DIR_ENV, "").split(os.pathsep) if p]
    for folder in dirs:
        if folder.exists() and not folder.is_dir():
            raise SqueezelabError(f"${WEIGHTS_DIR_ENV} names {folder}, which is a file; set it to the folder that "
                                  f"holds the weights files (several folders separated by '{os.pathsep}')")
    return [*dirs, BUNDLED_DIR, TRAINED_DIR]


def _find_local(wfile: WeightFile, dirs: Sequence[Path]) -> Optional[Path]:
    for folder in dirs:
        if not folder.is_dir():
            continue
        for candidate in (folder / wfile.filename, *sorted(folder.glob(f"*/{wfile.filename}"))):
            if candidate.is_file():
                if sha256_file(candidate) != wfile.sha256:
                    raise SqueezelabError(f"{candidate} has the wrong sha256 (expected {wfile.sha256[:12]}...); "
                                          f"replace it with the upstream file {wfile.url}")
                return candidate
    return None


def download(url: str, dest: PathLike, sha256: str, timeout: float = 60.0) -> Path:
    """Stream ``url`` to ``dest`` atomically; the file appears only if its sha256 matches."""
    dest = Path(dest)
    digest = hashlib.sha256()
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise SqueezelabError(f"cannot download {url} ({reason}); offline? get the file elsewhere and pass its path "
                              f"(--weights /path/to/{dest.name}) or put it in ${WEIGHTS_DIR_ENV}") from None
    try:
        with response, atomic_path(dest) as tmp, open(tmp, "wb") as out:
            for chunk in iter(lambda: response.read(1 << 16), b""):
                digest.update(chunk)
                out.write(chunk)
            out.close()
            if digest.hexdigest() != sha256:
                raise SqueezelabError(f"download of {url} has sha256 {digest.hexdigest()[:12]}..., expected "
                                      f"{sha256[:12]}...; nothing was saved, try again or pass a local file")
    except (OSError, http.client.HTTPException) as exc:
        raise SqueezelabError(f"download of {url} to {dest} failed ({exc}); nothing was saved, check the network "
                              f"or set ${CACHE_ENV} to a writable folder") from None
    return dest


def fetch_weights(name: str, cache: Optional[PathLike] = None, local_dirs: Optional[Sequence[PathLike]] = None,
                  allow_download: bool = True) -> Path:
    """Local path of a registered entry's main file: from a local folder, the cache, or a verified download."""
    entry = get_weights_entry(name)
    dirs = [Path(d) for d in local_dirs] if local_dirs is not None else local_weight_dirs()
    found = [_find_local(f, dirs) for f in entry.files]
    if all(found) and len({p.parent for p in found if p}) == 1:
        return found[0]  # type: ignore[return-value]
    folder = Path(cache) if cache is not None else cache_dir()
    folder = folder / entry.name
    for wfile in entry.files:
        target = folder / wfile.filename
        if target.is_file() and sha256_file(target) == wfile.sha256:
            continue
        if wfile.url is None:
            raise SqueezelabError(f"{entry.name} ships inside the squeezelab package ({TRAINED_DIR.name}/"
                                  f"{wfile.filename}), which is missing here; reinstall squeezelab or set "
                                  f"${WEIGHTS_DIR_ENV} to a folder holding {wfile.filename}")
        if not allow_download:
            raise SqueezelabError(f"{entry.name} is not in a local folder or the cache and downloads are off; run "
                                  f"'squeezelab predict {entry.architecture} --weights {entry.name} IMAGE' online once "
                                  f"or set ${WEIGHTS_DIR_ENV} to a folder holding {wfile.filename}")
        download(wfile.url, target, wfile.sha256)
    return folder / entry.files[0].filename

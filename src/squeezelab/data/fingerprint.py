"""Data fingerprints: what a training run records about its data, so ``--resume`` trains on the same images.

A fingerprint is a small JSON-able dict: the source kind, the number of images and classes, their
total size in bytes and a SHA-256 digest. For files it digests what a ``stat`` gives (each image's path
relative to the source root and its size), one ``stat`` per image, and reads the bytes only of folders of
at most :data:`CONTENT_DIGEST_MAX_BYTES` (the 100 ImageNet samples, test folders); zip files
digest their central directory (member names, sizes and CRC-32s: content-sensitive at no extra cost);
array sources (digits, Fashion-MNIST) digest the decoded pixels and labels, which are already in memory.
Relative paths make a moved or copied folder the same data; an added, removed, renamed or resized image,
or another class folder, is different data (docs/reliability.md, "Data fingerprints").
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..errors import SqueezelabError

#: Image folders up to this size are digested byte for byte (a few hundred ms at most); larger ones by
#: names and sizes only, so a file rewritten in place with the same size goes unseen there.
CONTENT_DIGEST_MAX_BYTES = 256 * 2 ** 20
#: The fields of a fingerprint compared on resume (``kind`` and the counts make the error message).
COMPARED = ("kind", "images", "classes", "bytes", "sha256")


def _digest(classes: Sequence[str]) -> "hashlib._Hash":
    """A SHA-256 that starts with the class names (another class list is other data)."""
    return hashlib.sha256("\n".join(classes).encode() + b"\0")


def _fingerprint(kind: str, images: int, classes: int, size: int, digest: "hashlib._Hash") -> dict[str, Any]:
    return {"kind": kind, "images": int(images), "classes": int(classes), "bytes": int(size),
            "sha256": digest.hexdigest()}


def files_fingerprint(root: Path, files: Sequence[Path], classes: Sequence[str]) -> dict[str, Any]:
    """The fingerprint of image files under ``root``: their relative paths and sizes (one ``stat`` each), and
    their bytes too when all of them together are at most :data:`CONTENT_DIGEST_MAX_BYTES`."""
    files = sorted(files)
    sizes = [path.stat().st_size for path in files]
    total = sum(sizes)
    digest = _digest(classes)
    for path, size in zip(files, sizes):
        digest.update(f"{path.relative_to(root).as_posix()}\0{size}\n".encode("utf-8", "surrogateescape"))
        if total <= CONTENT_DIGEST_MAX_BYTES:
            try:
                digest.update(hashlib.sha256(path.read_bytes()).digest())
            except OSError:  # unreadable: training skips and counts it, the fingerprint notes it
                digest.update(b"unreadable")
    return _fingerprint("folder", len(files), len(classes), total, digest)


def zips_fingerprint(paths: Sequence[Path], images: int, classes: Sequence[str]) -> dict[str, Any]:
    """The fingerprint of zip archives from their central directories (member names, sizes, CRC-32s)."""
    digest, total = _digest(classes), 0
    for path in paths:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                total += info.file_size
                digest.update(f"{info.filename}\0{info.file_size}\0{info.CRC}\n".encode("utf-8", "surrogateescape"))
    return _fingerprint("zip", images, len(classes), total, digest)


def arrays_fingerprint(arrays: Sequence[np.ndarray], images: int, classes: Sequence[str]) -> dict[str, Any]:
    """The fingerprint of in-memory data (pixels and labels): a digest of every byte and its shape."""
    digest, total = _digest(classes), 0
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
        total += array.nbytes
    return _fingerprint("arrays", images, len(classes), total, digest)


def describe(fingerprint: Mapping[str, Any]) -> str:
    """``1,234 images in 10 classes, 5.6 MB`` (for messages)."""
    return (f"{fingerprint['images']:,} images in {fingerprint['classes']} classes, "
            f"{fingerprint['bytes'] / 1e6:.1f} MB")


def check_same_data(saved: Optional[Mapping[str, Any]], current: Mapping[str, Any], source: str,
                    saved_source: str) -> None:
    """Refuse to resume a run on data other than its own, in one line.

    ``saved`` is the run's fingerprint (None for a run saved before fingerprints: then only the run's own
    source, by any path, is accepted); ``current`` the fingerprint of ``source``, the data found now.
    """
    if saved is None:
        if source != saved_source:
            raise SqueezelabError(f"cannot resume on {source}: the run predates data fingerprints, so its data "
                                  f"cannot be recognised elsewhere; resume with its own --data {saved_source}")
        return
    if all(saved.get(key) == current.get(key) for key in COMPARED):
        return
    moved = "" if source == saved_source else f" (the run trained on {saved_source})"
    if saved.get("kind") != current.get("kind"):
        counts = f"a {saved.get('kind')} source then, a {current.get('kind')} source now"
    elif describe(saved) == describe(current):
        counts = f"{describe(current)} as before, but other file names, sizes or contents"
    else:
        counts = f"{describe(saved)} then, {describe(current)} now"
    raise SqueezelabError(f"cannot resume: the data at {source} is not the run's data{moved}: {counts}; restore "
                          f"the run's images or start a new run with another -o")

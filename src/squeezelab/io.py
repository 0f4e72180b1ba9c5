"""Small file helpers shared by every stage: output checks, atomic writes and hashing.

Every checkpoint, cache entry, report and compressed file is written to a
temporary file beside its destination and renamed into place, so a crash or a
Ctrl-C never leaves a half-written file under the real name. The rename only
ever replaces a regular file: a folder, device, FIFO or socket at the output
path is refused, and so is a path the command reads (``inputs``).
:func:`check_output` runs the same checks before a command starts its work;
write failures (read-only folder, disk full, file-size limit) become one-line
:class:`~squeezelab.errors.SqueezelabError`\\ s.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Literal, Optional, Union

from .errors import SqueezelabError

PathLike = Union[str, os.PathLike]
_UMASK = os.umask(0)
os.umask(_UMASK)
#: errnos that always mean "the write failed", whatever file the error names.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS})
#: The name :func:`atomic_path` gives its temporary file: ``.NAME.XXXXXXXX.tmp`` (``tempfile.mkstemp``).
_TEMPORARY_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def _describe(mode: int) -> str:
    for test, name in ((stat.S_ISREG, "a file"), (stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _writable_ancestor(folder: Path, path: Path, what: str) -> None:
    """A one-line error unless ``folder`` or its nearest existing ancestor is a folder this process can write."""
    parent = folder
    while not parent.exists() and parent != parent.parent:
        if parent.is_symlink():
            raise SqueezelabError(f"cannot write {what} {path}: {parent} is a broken link")
        parent = parent.parent
    if not parent.is_dir():
        raise SqueezelabError(f"cannot write {what} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SqueezelabError(f"cannot write {what} {path}: folder {parent} is not writable")


def check_output(path: PathLike, inputs: Iterable[Optional[PathLike]] = (), kind: Literal["file", "dir"] = "file",
                 what: str = "output") -> Path:
    """Check, before any work, that ``path`` can be written as a ``kind`` without destroying anything.

    Refused with a one-line error: a file output that exists and is not a regular file (folder,
    device, FIFO, socket); a folder output that exists and is not a folder; an output that is one
    of ``inputs``; an output whose folder cannot be created or written.
    """
    out = Path(path)
    if not str(path).strip():
        raise SqueezelabError(f"the {what} path is empty; give a file name")
    for source in inputs:
        if source and _same_file(out, Path(source)):
            raise SqueezelabError(f"refusing to write {what} {out} over the input {source}; choose another path")
    if out.exists():
        mode = out.stat().st_mode
        if kind == "dir":
            if not stat.S_ISDIR(mode):
                raise SqueezelabError(f"{what} folder {out} exists and is {_describe(mode)}, not a folder; choose "
                                      f"another path")
            if not os.access(out, os.W_OK | os.X_OK):
                raise SqueezelabError(f"cannot write into {what} folder {out}: it is not writable")
            return out
        if not stat.S_ISREG(mode):
            raise SqueezelabError(f"{what} {out} exists and is {_describe(mode)}; squeezelab writes only regular "
                                  f"files, choose another path")
    elif out.is_symlink():
        raise SqueezelabError(f"{what} {out} is a broken link; remove it or choose another path")
    _writable_ancestor(out.parent if kind == "file" else out, out, what)
    return out


#: Temporary path -> the file it becomes, for every :func:`atomic_path` open in this process: a write nested in
#: another (an exporter writing atomically to the CLI's temporary file) names the user's file in its errors.
_TARGETS: dict[Path, Path] = {}


def target_name(path: PathLike) -> Path:
    """The file the user asked for: ``path``, or the target of the atomic write whose temporary file it is."""
    return _TARGETS.get(Path(path), Path(path))


def _write_error(final: Path, exc: OSError) -> SqueezelabError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    return SqueezelabError(f"cannot write {target_name(final)}: {reason}; nothing was written there")


@contextlib.contextmanager
def atomic_path(path: PathLike, inputs: Iterable[Optional[PathLike]] = ()) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, else delete it.

    The checks of :func:`check_output` run first; ``OSError``\\ s while writing become one-line errors.
    """
    final = check_output(path, inputs)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    except OSError as exc:
        raise _write_error(final, exc) from None
    os.close(fd)
    tmp = Path(tmp_name)
    _TARGETS[tmp] = target_name(final)
    try:
        try:
            yield tmp
        except OSError as exc:
            if exc.errno in _WRITE_ERRNOS or exc.filename in (tmp_name, str(final)):
                raise _write_error(final, exc) from None
            raise
        if final.exists() and not final.is_file():  # appeared while we worked
            raise SqueezelabError(f"{target_name(final)} became {_describe(final.stat().st_mode)} while squeezelab "
                                  f"wrote it; nothing was written there")
        try:
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
            os.replace(tmp, final)
        except OSError as exc:
            raise _write_error(final, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        _TARGETS.pop(tmp, None)


def remove_stray_temporaries(folder: PathLike) -> list[Path]:
    """Delete the temporary files that writes into ``folder`` left behind (a process killed mid-write).

    Only for a folder no other process is writing: a run or sweep directory under its lock.
    Returns the files removed.
    """
    removed = []
    for path in Path(folder).iterdir():
        if _TEMPORARY_NAME.fullmatch(path.name) and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def atomic_write_bytes(path: PathLike, data: bytes, inputs: Iterable[Optional[PathLike]] = ()) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path, inputs) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: PathLike, text: str, inputs: Iterable[Optional[PathLike]] = ()) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    atomic_write_bytes(path, text.encode("utf-8"), inputs)


def sha256_file(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()

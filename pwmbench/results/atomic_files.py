"""Files written whole or not at all, optionally with a checksum beside them, and a clear error when the disk is full.

Every file pwmbench writes into a results directory goes through `write_atomic`: the bytes go to a temporary file in
the same directory (`.<name>.<random>.tmp`), which is renamed over the target, so a reader — or a run resumed after
kill -9 — sees the old file or the new one, never half of one. Files that decide what a resumed run trusts (result
tables, checkpoints) also get `<name>.sha256`: a truncated or garbled file is detected on read instead of being
believed. Before the rename the checksum file names the new bytes' hash and every hash the old file may have; after
it, the new one alone: a crash at any moment leaves a whole file (old or new) that its checksum file vouches for —
never a file without a checksum, never one with a wrong checksum.

A write that fails because the disk (or a quota, or a file-size limit) is full raises `DiskFull` naming the file and
what to do; the temporary file is removed, the previous file stays.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from pathlib import Path

from pwmbench.errors import PwmbenchError

TEMP_SUFFIX = ".tmp"
CHECKSUM_SUFFIX = ".sha256"
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class DiskFull(PwmbenchError, OSError):
    """A file could not be written for lack of space (disk full, quota, file-size limit)."""

    def __str__(self) -> str:  # the message alone: "[Errno 28] ..." only delays what to do
        return str(self.strerror)


class ChecksumMismatch(PwmbenchError):
    """A file does not match the checksum written beside it: truncated or changed since it was written."""


def checksum_path(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def sha256_of(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def no_space(exc: OSError, path: str | os.PathLike[str]) -> OSError:
    """`exc` as a DiskFull naming `path` when it is a lack of space, else `exc` itself (for writers outside
    `write_atomic`, e.g. the results lock)."""
    return _no_space(exc, Path(path)) if exc.errno in _NO_SPACE and not isinstance(exc, DiskFull) else exc


def _no_space(exc: OSError, path: Path) -> DiskFull:
    return DiskFull(exc.errno, f"cannot write {path}: {exc.strerror or exc} — free some space and run the same command "
                               "again (finished cells are kept; the others resume from their last checkpoints)")  # fmt: skip


def write_atomic(data: bytes, path: str | os.PathLike[str], *, checksum: bool = False, durable: bool | None = None) -> Path:
    """Write `data` to `path` via a temporary file and a rename; with `checksum`, also `<path>.sha256`. `durable`
    (default: with a checksum) fsyncs the bytes before the rename, so they survive a machine crash too."""
    path, durable = Path(path), checksum if durable is None else durable
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:  # what a resume trusts (checksummed files) outlives a machine crash too
                f.flush()
                os.fsync(f.fileno())
        digest = hashlib.sha256(data).hexdigest() if checksum else None
        if digest:  # the file is old or new until the rename: the checksum file vouches for both meanwhile
            # every hash the file may still have (a crash before an earlier rename leaves two): none dropped
            _write_checksums([digest, *(_checksums(path) or ([sha256_of(path)] if path.exists() else []))], path)
        else:
            checksum_path(path).unlink(missing_ok=True)  # an old checksum never outlives its file's contents
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and (full := no_space(exc, path)) is not exc:
            raise full from exc
        raise
    if digest:
        _write_checksums([digest], path)
    return path


def _checksums(path: Path) -> list[str]:
    """The hashes `<path>.sha256` vouches for (none when it is missing)."""
    try:
        return checksum_path(path).read_text().split()
    except FileNotFoundError:
        return []


def _write_checksums(digests: list[str], path: Path) -> None:
    write_atomic("".join(d + "\n" for d in digests).encode(), checksum_path(path), durable=True)  # not an empty one after a crash


def write_text_atomic(text: str, path: str | os.PathLike[str]) -> Path:
    return write_atomic(text.encode(), path)


def torch_save_atomic(obj: object, path: str | os.PathLike[str], *, checksum: bool = False) -> Path:
    """`torch.save(obj)` through `write_atomic`: serialised in memory first, so a full disk is a DiskFull naming the
    file rather than torch's opaque stream-writer error, and the file is never half-written."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_atomic(buffer.getvalue(), path, checksum=checksum)


def verify_checksum(path: str | os.PathLike[str]) -> None:
    """Raise ChecksumMismatch when `<path>.sha256` exists and does not match the file (no checksum: nothing to check)."""
    expected = checksum_path(path)
    want = _checksums(Path(path))
    if expected.exists() and sha256_of(path) not in want:
        raise ChecksumMismatch(f"{path} does not match its checksum ({expected.name}): truncated or changed since it was written")


def remove(path: str | os.PathLike[str]) -> None:
    """Delete a file and the checksum beside it (either may be missing)."""
    Path(path).unlink(missing_ok=True)
    checksum_path(path).unlink(missing_ok=True)


def move_aside(path: str | os.PathLike[str], suffix: str = ".corrupt") -> Path:
    """Move a file that cannot be trusted to `<name>.corrupt` (kept for a post-mortem) and drop its checksum."""
    path = Path(path)
    aside = path.with_name(path.name + suffix)
    os.replace(path, aside)
    checksum_path(path).unlink(missing_ok=True)
    return aside


def remove_temp_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files a killed writer left in `directory` (`.<name>.….tmp`; never read, never renamed).

    Call only where no other process is writing (a cell's directory when its job starts: the results lock and the
    job graph make the job its only writer)."""
    removed = []
    for stray in Path(directory).glob(f".*{TEMP_SUFFIX}"):
        if stray.is_file():
            stray.unlink(missing_ok=True)
            removed.append(stray)
    return removed

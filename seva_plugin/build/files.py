"""Crash-safe file writes: whole files appear atomically, shared files are updated under a lock."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator

from seva_plugin.errors import SevaError


class WriteError(SevaError):
    """Writing output failed (disk full, permissions...). Finished work is kept; rerun to resume."""


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def write_errors(what: str) -> Iterator[None]:
    """Turn OSError into a WriteError that says what was being written and what to do."""
    try:
        yield
    except OSError as exc:
        hint = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else exc.strerror or str(exc)
        raise WriteError(f"could not write {what}: {hint}. Finished work is kept; free the problem and rerun the same command to resume.") from exc


def atomic_write_lines(path: str, lines: Iterable[str]) -> str:
    """Write ``lines`` to ``path`` via a temp file and rename; return the sha256 of the bytes."""
    return atomic_write_bytes(path, (line.encode("utf-8") for line in lines))


def atomic_write_bytes(path: str, chunks: Iterable[bytes]) -> str:
    """Write ``chunks`` to ``path`` via a temp file and rename; return the sha256 of the bytes."""
    folder = os.path.dirname(os.path.abspath(path))
    digest = hashlib.sha256()
    with write_errors(path):
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                for data in chunks:
                    digest.update(data)
                    fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            _fsync_dir(folder)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    return digest.hexdigest()


def atomic_write_json(path: str, obj) -> str:
    return atomic_write_lines(path, [json.dumps(obj, indent=2, ensure_ascii=False) + "\n"])


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    """An exclusive advisory lock on ``path + '.lock'`` (for read-modify-write of shared files)."""
    with write_errors(path + ".lock"), open(path + ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def check_writable(folder: str) -> None:
    from seva_plugin.errors import ConfigError

    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(f"output folder {folder} is not writable: {exc.strerror or exc}.") from None

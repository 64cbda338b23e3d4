"""Crash-safe file writes: whole files appear atomically, shared files are updated under a lock.

Every file a build writes goes through here, so every writer keeps the same promises
(docs/resume.md): a new file gets the permissions the user's umask gives (not ``mkstemp``'s
0600), a replaced file keeps its mode, a symlink is written through (the link stays a link), a
directory where a file should be is a clear error, and one build at a time writes an output
(``output_lock``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator

from seva_plugin.errors import SevaError


class WriteError(SevaError):
    """Writing output failed (disk full, permissions...). Finished work is kept; rerun to resume.
    ``what`` and ``problem`` let a command other than a build say what to do instead."""

    def __init__(self, message: str, what: str = "", problem: str = ""):
        super().__init__(message)
        self.what, self.problem = what, problem


def fsync_path(path: str) -> None:
    """fsync a file or folder by path (a folder: so a rename in it survives a crash)."""
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
        raise WriteError(f"could not write {what}: {hint}. Finished work is kept; free the problem and rerun the same command to resume.", what, hint) from exc


def atomic_write_lines(path: str, lines: Iterable[str]) -> str:
    """Write ``lines`` to ``path`` via a temp file and rename; return the sha256 of the bytes.

    A lone surrogate (a ``\\ud800`` escape in a source's JSON) cannot be UTF-8: it is written as
    that escape, which a JSON line reads back as the same string."""
    return atomic_write_bytes(path, (line.encode("utf-8", "backslashreplace") for line in lines))


def file_target(path: str) -> str:
    """The file a write to ``path`` lands in: the target of a symlink (the link itself stays), never
    a directory (a clear WriteError instead of ``IsADirectoryError`` deep in a writer)."""
    target = os.path.realpath(path)
    if os.path.isdir(target):
        raise WriteError(f"{path} is a directory, not a file: move it out of the way (or choose another output.dataset_dir) and rerun.")
    return target


def umask() -> int:
    """The process umask, read without changing it where the system says (Linux), else set and restored."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(target: str) -> int:
    """A replaced file keeps its mode; a new one gets what ``open()`` would give it (0666 less the umask)."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        return 0o666 & ~umask()


def atomic_write_bytes(path: str, chunks: Iterable[bytes]) -> str:
    """Write ``chunks`` to ``path`` via a temp file and rename; return the sha256 of the bytes.

    Through a symlink to its target; with the target's mode, or the umask's for a new file."""
    target = file_target(path)
    folder = os.path.dirname(target)
    digest = hashlib.sha256()
    with write_errors(path):
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(target)}.", suffix=".tmp")
        try:
            os.fchmod(fd, _mode_for(target))
            with os.fdopen(fd, "wb") as fh:
                for data in chunks:
                    digest.update(data)
                    fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
            fsync_path(folder)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    return digest.hexdigest()


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_json(path: str, obj) -> str:
    return atomic_write_lines(path, [json.dumps(obj, indent=2, ensure_ascii=False) + "\n"])


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    """An exclusive advisory lock on ``path + '.lock'`` (for read-modify-write of shared files); for a
    symlink, next to its target, so every folder linking one shared file takes the same lock."""
    lock = os.path.realpath(path) + ".lock"
    with write_errors(lock), open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def check_writable(folder: str, what: str = "output folder") -> None:
    """Make ``folder`` (and its parents) and write in it, or a ConfigError saying why not."""
    from seva_plugin.errors import ConfigError

    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and os.path.abspath(str(exc.filename)) != os.path.abspath(folder) else ""
        raise ConfigError(f"{what} {folder} is not writable: {exc.strerror or exc}{where}.") from None


class OutputBusy(SevaError):
    """Another build holds the output (``output_lock``)."""


@contextlib.contextmanager
def reading_lock(path: str, what: str) -> Iterator[None]:
    """Share a build's lock while its finished outputs are read (``seva export``): no build of it can
    start meanwhile, and a running build refuses the reader. The file is opened read-only, so a
    finished build on a read-only mount is read all the same; without a lock file no build ran
    there and none is needed."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "a process that has not written its id yet"
            raise OutputBusy(f"a build ({holder}) is writing {what}: wait for it to finish and run the export again. Lock: {path}") from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


BUILD_BUSY = (
    "another build ({holder}) is writing {what}. Two builds on one output would record every pair twice: "
    "wait for it to finish (or stop it) and rerun; finished work is kept. Lock: {path}"
)


@contextlib.contextmanager
def output_lock(path: str, what: str, refusal: str = BUILD_BUSY) -> Iterator[None]:
    """Hold ``path`` (a lock file) while one build writes ``what``: a second build on the same output
    refuses at once, naming the process that holds it, rather than waiting or writing the same
    pairs a second time. The lock is ``flock``: released by the system when the holder exits,
    however it ends (``kill -9`` included), so a stale lock file never blocks a rerun."""
    with write_errors(path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "a seva export reading it, or a build starting"
            raise OutputBusy(refusal.format(holder=holder, what=what, path=path)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)

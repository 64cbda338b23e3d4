"""The build journal: an append-only log of finished work that makes builds resumable.

Each batch is appended as one write of complete lines ending in a ``commit`` line and then
fsynced. On open, anything after the last commit (a torn or half-written batch) is cut off,
so a killed build resumes exactly at a batch boundary and no record is written twice.

The file is created with the first batch: a build that stops before finishing any record (a
missing source file, a model that does not load) leaves no journal, and a journal that holds no
finished work never blocks a build with another config. The header records the config's
fingerprint and the config itself, so a refused resume names the keys that changed.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator

from seva_plugin.errors import ConfigError, show
from seva_plugin.pipeline.files import write_errors

COMMIT = b'{"kind": "commit"}\n'


def json_line(entry: dict) -> bytes:
    """One journal line. A lone surrogate (a ``\\ud800`` escape in a source's JSON) cannot be UTF-8:
    it is written as its JSON escape and reads back as the same string."""
    text = json.dumps(entry, ensure_ascii=False)
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        return json.dumps(entry).encode("ascii") + b"\n"


def _what_to_do(path: str) -> str:
    return f"Delete it to rebuild from scratch (rm '{path}'), or rerun with output.overwrite=true; the data file, if any, is untouched until a build ends."


class Journal:
    def __init__(self, path: str, fingerprint: str, on_mismatch: str = "error", config: dict | None = None):
        self.path = path
        self.fingerprint = fingerprint
        self.config = json.loads(json.dumps(config, default=str)) if config is not None else None
        self.done: Counter[str] = Counter()  # id -> finished occurrences
        self.inputs: dict[str, list[dict | None]] = {}  # id -> each finished occurrence's input fingerprint (intake.fingerprint)
        self.resumed = False
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.exists(path):
            self._recover(restart=on_mismatch == "restart")

    def _header(self, data: bytes) -> dict:
        try:
            header = json.loads(data.split(b"\n", 1)[0])
        except (json.JSONDecodeError, UnicodeDecodeError):
            header = None
        if not isinstance(header, dict) or header.get("kind") != "header":
            nul = " (it holds NUL bytes: the machine probably crashed while writing it)" if b"\0" in data.split(b"\n", 1)[0] else ""
            raise ConfigError(f"build journal {self.path}: its header (line 1) is damaged{nul}. {_what_to_do(self.path)}")
        return header

    def _recover(self, restart: bool) -> None:
        path = self.path
        with open(path, "rb") as fh:
            data = fh.read()
        end = data.rfind(COMMIT)
        if end < 0:  # not even the header was committed: no finished work, nothing to protect
            self._start_over()
            return
        try:
            header = self._header(data)
        except ConfigError:
            if not restart:
                raise
            self._start_over()  # output.overwrite: start over
            return
        end += len(COMMIT)
        if end < len(data):
            with write_errors(path), open(path, "r+b") as fh:
                fh.truncate(end)
                fh.flush()
                os.fsync(fh.fileno())
        if header.get("fingerprint") != self.fingerprint:
            if restart or not any(True for _ in self.entries()):
                self._start_over()  # output.overwrite, or a journal without finished work
                return
            changed = changed_keys(header.get("config"), self.config)
            raise ConfigError(
                f"{path} records a build of this dataset with a different config"
                + (f" (changed: {changed})" if changed else "")
                + ". Rerun with that config to resume it, or set output.overwrite=true to start over."
            )
        for entry in self.entries():
            if "id" in entry:
                self._count(entry)
                self.resumed = True

    def _start_over(self) -> None:
        with write_errors(self.path):
            os.unlink(self.path)

    def discard(self) -> None:
        """Forget the finished work (``output.overwrite`` over a changed source): the build starts over."""
        self._start_over()
        self.done.clear()
        self.inputs.clear()
        self.resumed = False

    def entries(self) -> Iterator[dict]:
        return read_entries(self.path) if os.path.exists(self.path) else iter(())

    def append(self, entries: list[dict]) -> None:
        """Append one batch atomically: all its lines and a commit, or (after recovery) none of them.
        The first batch creates the file, its header first."""
        if not entries:
            return
        payload = b"".join(json_line(e) for e in entries) + COMMIT
        if not os.path.exists(self.path):
            header = {"kind": "header", "fingerprint": self.fingerprint}
            if self.config is not None:
                header["config"] = self.config
            payload = json_line(header) + COMMIT + payload
        with write_errors(self.path), open(self.path, "ab") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        for e in entries:
            self._count(e)

    def _count(self, entry: dict) -> None:
        self.done[entry["id"]] += 1
        self.inputs.setdefault(entry["id"], []).append(entry.get("inputs"))


def journal_fingerprint(path: str) -> str | None:
    """The fingerprint a journal's header records; None when there is no (readable) journal."""
    try:
        with open(path, "rb") as fh:
            header = json.loads(fh.readline())
    except (OSError, ValueError):
        return None
    return header.get("fingerprint") if isinstance(header, dict) else None


def changed_keys(old, new) -> str:
    """``a.b (1 -> 2), c (added)``: the dotted keys whose values differ between two configs."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return ""

    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict) and v:
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    a, b = flat(old), flat(new)
    parts = []
    for key in sorted(set(a) | set(b)):
        if key not in b:
            parts.append(f"{key} (removed)")
        elif key not in a:
            parts.append(f"{key} (added: {show(b[key], 40)})")
        elif a[key] != b[key]:
            parts.append(f"{key} ({show(a[key], 40)} -> {show(b[key], 40)})")
    return ", ".join(parts)


def read_entries(path: str) -> Iterator[dict]:
    """The committed entries of a journal (pairs, drops and rejects): what a batch wrote after the
    last ``commit`` line is not finished work and is left out."""
    pending: list[dict] = []
    bad_line = None  # a line that is not JSON is a torn tail, unless a commit follows it
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if line == COMMIT:
                if bad_line is not None:
                    raise ConfigError(f"build journal {path} is damaged: committed line {bad_line}. {_what_to_do(path)}")
                yield from pending
                pending = []
                continue
            try:
                entry = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                if bad_line is None:
                    bad_line = f"{lineno} holds NUL bytes (the machine probably crashed while writing it)" if b"\0" in line else f"{lineno} is not JSON"
                continue
            if isinstance(entry, dict) and entry.get("kind") != "header":
                pending.append(entry)

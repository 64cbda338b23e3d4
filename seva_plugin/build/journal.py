"""The build journal: an append-only log of finished work that makes builds resumable.

Each batch is appended as one write of complete lines ending in a ``commit`` line and then
fsynced. On open, anything after the last commit (a torn or half-written batch) is cut off,
so a killed build resumes exactly at a batch boundary and no record is written twice.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator

from seva_plugin.build.files import write_errors
from seva_plugin.errors import ConfigError

COMMIT = b'{"kind": "commit"}\n'


class Journal:
    def __init__(self, path: str, fingerprint: str, on_mismatch: str = "error"):
        self.path = path
        self.done: Counter[str] = Counter()  # id -> finished occurrences
        self.resumed = False
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.exists(path) and on_mismatch == "restart" and self._fingerprint() != fingerprint:
            os.unlink(path)  # output.overwrite: start over rather than resume another config's work
        if os.path.exists(path):
            self._recover(fingerprint)
        else:
            with write_errors(path), open(path, "wb") as fh:
                fh.write(json.dumps({"kind": "header", "fingerprint": fingerprint}).encode() + b"\n" + COMMIT)
                fh.flush()
                os.fsync(fh.fileno())

    def _fingerprint(self) -> str | None:
        with open(self.path, "rb") as fh:
            try:
                return json.loads(fh.readline()).get("fingerprint")
            except (json.JSONDecodeError, AttributeError):
                return None

    def _recover(self, fingerprint: str) -> None:
        with open(path := self.path, "rb") as fh:
            data = fh.read()
        end = data.rfind(COMMIT)
        if end < 0:
            raise ConfigError(f"build journal {path} is damaged (no committed header); delete it to start over.")
        end += len(COMMIT)
        if end < len(data):
            with write_errors(path), open(path, "r+b") as fh:
                fh.truncate(end)
                fh.flush()
                os.fsync(fh.fileno())
        header = json.loads(data.split(b"\n", 1)[0])
        if header.get("fingerprint") != fingerprint:
            raise ConfigError(
                f"{path} records a build of this dataset with a different config. "
                "Rerun with that config to resume it, or set output.overwrite=true to start over."
            )
        for entry in self.entries():
            if "id" in entry:
                self.done[entry["id"]] += 1
                self.resumed = True

    def entries(self) -> Iterator[dict]:
        return read_entries(self.path)

    def append(self, entries: list[dict]) -> None:
        """Append one batch atomically: all its lines and a commit, or (after recovery) none of them."""
        if not entries:
            return
        payload = b"".join(json.dumps(e, ensure_ascii=False).encode() + b"\n" for e in entries) + COMMIT
        with write_errors(self.path), open(self.path, "ab") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        for e in entries:
            self.done[e["id"]] += 1


def read_entries(path: str) -> Iterator[dict]:
    """The committed entries of a journal (pairs, drops and rejects): what a batch wrote after the
    last ``commit`` line is not finished work and is left out."""
    pending: list[dict] = []
    bad_line = None  # a line that is not JSON is a torn tail, unless a commit follows it
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if line == COMMIT:
                if bad_line is not None:
                    raise ConfigError(
                        f"build journal {path} is damaged: committed line {bad_line} is not JSON. "
                        "Delete the journal to rebuild from scratch (the data file, if any, is untouched until the build ends)."
                    )
                yield from pending
                pending = []
                continue
            try:
                entry = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                bad_line = bad_line or lineno
                continue
            if isinstance(entry, dict) and entry.get("kind") != "header":
                pending.append(entry)

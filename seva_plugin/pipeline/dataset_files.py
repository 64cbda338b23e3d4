"""One dataset's files on disk, named in one place for the build, the gallery, iterate, the demo
and the recipe checker."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

from seva_plugin.errors import ConfigError, show
from seva_plugin.pipeline.journal import read_entries

REGISTRY = "dataset_info.json"
MAX_NAME_BYTES = 200  # leaves room for ".manifest.json" and the like under the usual 255-byte limit


def check_name(name, key: str = "name") -> None:
    """A dataset name is a plain file name: it names ``<name>.jsonl`` and friends inside
    ``dataset_dir`` and nothing outside it (no path separator, no ``..``, not hidden, no control
    characters, not too long)."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{key} must be a non-empty string, got {show(name)}.")
    why = None
    if "/" in name or "\\" in name or (os.sep in name) or (os.altsep and os.altsep in name):
        why = "it holds a path separator; set output.dataset_dir to choose the folder"
    elif name.startswith("."):
        why = "it starts with '.' (hidden, or a path like '..')"
    elif any(ord(c) < 32 or ord(c) == 127 for c in name):
        why = "it holds a control character"
    else:
        try:
            size = len(name.encode("utf-8"))
        except UnicodeEncodeError:
            why = "it is not valid Unicode text (a lone surrogate)"
        else:
            if size > MAX_NAME_BYTES:
                why = f"it is longer than {MAX_NAME_BYTES} bytes"
    if why:
        raise ConfigError(f"{key} {show(name, 60)} is not a safe file name: {why}. Use letters, digits, '_', '-' and '.'.")


@dataclass(frozen=True)
class DatasetFiles:
    dataset_dir: str
    name: str

    def __post_init__(self):
        check_name(self.name)
        object.__setattr__(self, "dataset_dir", os.path.abspath(self.dataset_dir))

    def _path(self, *parts: str) -> str:
        return os.path.join(self.dataset_dir, *parts)

    @property
    def data(self) -> str:
        """The sharegpt JSONL the ``llamafactory`` writer writes (other formats: see the manifest's ``files``)."""
        return self._path(f"{self.name}.jsonl")

    @property
    def manifest(self) -> str:
        return self._path(f"{self.name}.manifest.json")

    @property
    def rejects(self) -> str:
        return self._path(f"{self.name}.rejects.jsonl")

    @property
    def registry(self) -> str:
        return self._path(REGISTRY)

    @property
    def work_dir(self) -> str:
        """Build state that is not data: the journal and the lock."""
        return self._path(".seva")

    @property
    def journal(self) -> str:
        return os.path.join(self.work_dir, f"{self.name}.journal.jsonl")

    @property
    def lock(self) -> str:
        return os.path.join(self.work_dir, f"{self.name}.lock")

    def read_manifest(self) -> dict:
        """The manifest, or ``{}`` when the build has not finished once."""
        if not os.path.isfile(self.manifest):
            return {}
        with open(self.manifest, encoding="utf-8") as fh:
            return json.load(fh)

    def journal_entries(self) -> Iterator[dict]:
        """The journal's committed entries (pairs, drops and rejects), or none when there is no journal."""
        if os.path.isfile(self.journal):
            yield from read_entries(self.journal)

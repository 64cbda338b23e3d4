"""One dataset's files on disk, named in one place for the build, the gallery, iterate, the demo
and the recipe checker."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

from seva_plugin.build.journal import read_entries

REGISTRY = "dataset_info.json"


@dataclass(frozen=True)
class DatasetFiles:
    dataset_dir: str
    name: str

    def __post_init__(self):
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

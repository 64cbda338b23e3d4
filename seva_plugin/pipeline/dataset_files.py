"""One dataset's files on disk, named in one place for the build, the gallery, iterate, the demo
and the recipe checker."""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from seva_plugin.errors import ConfigError, show
from seva_plugin.pipeline.journal import read_entries

REGISTRY = "dataset_info.json"
MAX_NAME_BYTES = 200  # leaves room for ".manifest.json" and the like under the usual 255-byte limit
# The endings seva-plugin gives a dataset's files (and the registry): a name ending in one could meet
# another dataset's files (dataset 'x.rejects' would write its data to x.rejects.jsonl, the rejects of 'x').
RESERVED_ENDINGS = {
    ".jsonl": "{stem}.jsonl is the data file of dataset '{stem}'",
    ".json": "{name} is the name of a manifest, or of the registry dataset_info.json",
    ".rejects": "{stem}.rejects.jsonl is the rejects file of dataset '{stem}'",
    ".export_rejects": "{stem}.export_rejects.jsonl is the export rejects file of dataset '{stem}'",
    ".images": "{stem}.images is the image folder of dataset '{stem}'",
    ".lock": "{name} is the name of a lock file",
}
# Unicode categories no file name should hold: control, format (right-to-left overrides), line and paragraph separators
UNSAFE_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "an invisible formatting character (such as a right-to-left override)",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}


def check_name(name, key: str = "name") -> None:
    """A dataset name is a plain file name: it names ``<name>.jsonl`` and friends inside
    ``dataset_dir`` and nothing outside it (no path separator, no ``..``, not hidden, no control
    characters, not too long) and cannot meet another dataset's files (``RESERVED_ENDINGS``)."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{key} must be a non-empty string, got {show(name)}.")
    why = None
    if "/" in name or "\\" in name or (os.sep in name) or (os.altsep and os.altsep in name):
        why = "it holds a path separator; set output.dataset_dir to choose the folder"
    elif name.startswith("."):
        why = "it starts with '.' (hidden, or a path like '..')"
    elif any(unicodedata.category(c) in UNSAFE_CATEGORIES for c in name):
        char = next(c for c in name if unicodedata.category(c) in UNSAFE_CATEGORIES)
        why = f"it holds {UNSAFE_CATEGORIES[unicodedata.category(char)]} (U+{ord(char):04X})"
    elif ending := next((e for e in RESERVED_ENDINGS if name.lower().endswith(e)), None):
        clash = RESERVED_ENDINGS[ending].format(name=name, stem=name[: -len(ending)])
        raise ConfigError(
            f"{key} {show(name, 60)} ends in '{ending}', an ending seva-plugin names a dataset's own files with ({clash}): "
            f"its files could be another dataset's. Choose a name that does not end in {', '.join(RESERVED_ENDINGS)}."
        )
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
    def export_rejects(self) -> str:
        """What ``seva export`` left out, and why."""
        return self._path(f"{self.name}.export_rejects.jsonl")

    @property
    def sft(self) -> str:
        """The supervised set the ``llamafactory`` writer writes beside the pairs with ``output.sft`` (registered as ``NAME_sft``)."""
        return self._path(f"{self.name}_sft.jsonl")

    @property
    def images(self) -> str:
        """Image files a writer wrote for training (embedded images exported as files, normalised images)."""
        return self._path(f"{self.name}.images")

    @property
    def folder(self) -> str:
        """The Hub-ready folder of the Parquet writers (``llamafactory`` with ``format: parquet``, ``trl``)."""
        return self._path(self.name)

    @property
    def shards(self) -> str:
        return os.path.join(self.folder, "data")

    @property
    def card(self) -> str:
        return os.path.join(self.folder, "README.md")

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

    @property
    def writing(self) -> str:
        """Present while a build or an export replaces the outputs (``claims.writing``)."""
        return os.path.join(self.work_dir, f"{self.name}.writing")

    def check_replace(self, paths: Iterable[str], overwrite: bool) -> None:
        """Refuse to replace a file seva-plugin did not write (``claims.check_replace``)."""
        from seva_plugin.pipeline.claims import check_replace

        check_replace(self, paths, overwrite)

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

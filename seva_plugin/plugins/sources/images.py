"""Source ``images``: unlabeled images, with no question: a folder of images, or a list of image paths.

For strategies that ask their own prompts (``stic``): each record's prompt is only its ``<image>``
marker, so the build refuses this source for a strategy that answers the record's question
(``seva``, ``csr``, ``rlaifv``).

- ``dir``: every image file under the folder (its subfolders too), in sorted path order; a record's
  id is the path relative to the folder.
- ``file``: a JSONL file (or a JSON list) of objects with ``image`` (a path or a list of paths;
  ``images`` is a synonym) and optionally ``id`` and ``conversations``.
  ``conversations`` is an instruction in LLaVA's form (``[{"from": "human", "value": ...},
  {"from": "gpt", "value": ...}, ...]``), kept in the record's ``meta``: STIC's stage 2 infuses
  the model's description into it (``output.sft``), as the official ``add_des_to_data.py`` does
  with the LLaVA records of ``mixed_5k.json``, which this source reads as they are.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from seva_plugin import hookimpl
from seva_plugin.errors import ConfigError, show
from seva_plugin.interfaces import Source
from seva_plugin.pipeline.records import IMAGE_TOKEN, PromptRecord, Reject
from seva_plugin.plugins.sources.common import iter_json_rows, resolve

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


@dataclass
class ImagesSource(Source):
    name = "images"
    has_questions = False
    dir: str | None = None  # a folder of images (searched recursively)
    file: str | None = None  # or a JSONL / JSON list of {"image", "id"?, "conversations"?} rows
    image_dir: str | None = None  # `file`: the folder relative paths are relative to (default: the file's folder)

    def __post_init__(self) -> None:
        if (self.dir is None) == (self.file is None):
            raise ConfigError("source 'images' needs exactly one of 'dir' (a folder of images) or 'file' (a JSONL of image paths).")
        if self.dir is not None and not os.path.isdir(self.dir):
            raise ConfigError(f"source.dir {show(self.dir)} is not a folder.")

    def iter_records(self) -> Iterator[PromptRecord | Reject]:
        if self.dir is not None:
            yield from self._folder(self.dir)
            return
        assert self.file is not None
        base = self.image_dir or os.path.dirname(os.path.abspath(self.file))
        for index, row in iter_json_rows(self.file):
            if isinstance(row, Reject):
                yield row
            else:
                yield image_record(row.get("id", f"row-{index}"), row.get("image", row.get("images")), base, row.get("conversations"))

    def _folder(self, folder: str) -> Iterator[PromptRecord | Reject]:
        root = os.path.abspath(folder)
        found = []
        for parent, dirs, names in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            found += [os.path.join(parent, n) for n in names if n.lower().endswith(EXTENSIONS) and not n.startswith(".")]
        for path in sorted(found):
            yield PromptRecord(os.path.relpath(path, root), IMAGE_TOKEN, [path])


def image_record(record_id: Any, images: Any, base: str, conversations: Any = None) -> PromptRecord | Reject:
    """A record of ``images`` (a path or a list of paths) and no question; ``conversations`` kept in ``meta``."""
    record_id = str(record_id)
    images = images if isinstance(images, list) else [images] if images not in (None, "") else []
    if not images or not all(isinstance(p, str) and p for p in images):
        return Reject(record_id, f"'image' must be a non-empty path or list of paths, got {show(images)}", "no_image")
    meta: dict[str, Any] = {}
    if conversations is not None:
        turns_ok = isinstance(conversations, list) and conversations and all(isinstance(t, dict) and isinstance(t.get("value"), str) for t in conversations)
        if not turns_ok or conversations[0].get("from") != "human":
            return Reject(record_id, "'conversations' must be a list of {from, value} turns starting with a human turn", "bad_conversations")
        meta["conversations"] = conversations
    return PromptRecord(record_id, IMAGE_TOKEN * len(images), [resolve(p, base) for p in images], meta)


@hookimpl
def register_sources(register: Any) -> None:
    register(ImagesSource)

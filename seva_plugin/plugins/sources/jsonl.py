"""Source ``jsonl``: one ``{"id", "image", "question"}`` object per line."""

from __future__ import annotations

import os
from dataclasses import dataclass

from seva_plugin import hookimpl
from seva_plugin.interfaces import Source
from seva_plugin.pipeline.records import Reject
from seva_plugin.plugins.sources.common import guarded, iter_json_rows, make_record, record_id, reject_id


@dataclass
class JsonlSource(Source):
    """``image`` may be a path or a list of paths, relative to ``image_dir``
    (default: the folder of the file). ``images`` is accepted as a synonym."""

    name = "jsonl"
    file: str
    image_dir: str | None = None

    def iter_records(self):
        base = self.image_dir or os.path.dirname(os.path.abspath(self.file))
        for lineno, row in iter_json_rows(self.file):
            if isinstance(row, Reject):
                yield row
                continue
            fallback = f"line-{lineno}"
            yield guarded(reject_id(row.get("id"), fallback), self._record, row, fallback, base)

    @staticmethod
    def _record(row: dict, fallback: str, base: str):
        images = row.get("image", row.get("images"))
        return make_record(record_id(row.get("id"), fallback), row.get("question"), images, base)

    def estimated_length(self) -> int | None:
        """One record per non-blank line (a bad line is a reject, a record too); no JSON is parsed."""
        try:
            with open(self.file, "rb") as fh:
                return sum(1 for line in fh if line.strip())
        except OSError:
            return None


@hookimpl
def register_sources(register):
    register(JsonlSource)

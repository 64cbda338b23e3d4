"""Strategy ``seva``: chosen is the answer on the clean image, rejected the answer on the augmented one.

Both answers come from the same model, prompt and decoding in one batched call; the pair is
built from one record, so chosen and rejected can never be mismatched across records.
"""

from __future__ import annotations

from dataclasses import dataclass

from seva_plugin import hookimpl
from seva_plugin.build.records import Pair


@dataclass
class Seva:
    name = "seva"

    def views(self, augmenter) -> list:
        """Clean and augmented: declared up front so the backend can prepare batches ahead."""
        return [None, augmenter]

    def make_pairs(self, records, backend, augmenter) -> list[Pair]:
        clean, augmented = backend.generate(records, self.views(augmenter))
        return [Pair(r.record, c, a) for r, c, a in zip(records, clean, augmented, strict=True)]


@hookimpl
def register_strategies(register):
    register(Seva)

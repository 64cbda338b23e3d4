"""Strategy ``seva``: chosen is the answer on the clean image, rejected the answer on the augmented one.

Both answers come from the same model, prompt and decoding, asked together; the pair is built
from one record, so chosen and rejected can never be mismatched across records.
"""

from __future__ import annotations

from dataclasses import dataclass

from seva_plugin import hookimpl
from seva_plugin.interfaces import CLEAN, GenerationRequest, Strategy, View
from seva_plugin.pipeline.records import Pair


@dataclass
class Seva(Strategy):
    name = "seva"

    def views(self, augmenter) -> list[View]:
        """Clean (view 0) and augmented (view 1): declared up front so the backend can prepare batches ahead."""
        return [CLEAN, View(1, augmenter)]

    def make_pairs(self, records, backend, augmenter) -> list[Pair]:
        requests = [GenerationRequest(r, view) for view in self.views(augmenter) for r in records]
        answers = backend.generate(requests)
        n = len(records)
        return [Pair(r.record, c.texts[0], a.texts[0]) for r, c, a in zip(records, answers[:n], answers[n:], strict=True)]


@hookimpl
def register_strategies(register):
    register(Seva)

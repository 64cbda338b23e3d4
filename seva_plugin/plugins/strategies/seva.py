"""Strategy ``seva``: chosen is the answer on the clean image, rejected the answer on the augmented one.

Both answers come from the same model, prompt and decoding, asked together; the pair is built
from one record, so chosen and rejected can never be mismatched across records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from seva_plugin import hookimpl
from seva_plugin.interfaces import CLEAN, Augmenter, Backend, LoadedRecord, Pair, Strategy, View


@dataclass
class Seva(Strategy):
    name = "seva"

    def views(self, augmenter: Augmenter) -> list[View]:
        """Clean (view 0) and augmented (view 1): declared up front so the backend can prepare batches ahead."""
        return [CLEAN, View(1, augmenter)]

    def make_pairs(self, records: Sequence[LoadedRecord], backend: Backend, augmenter: Augmenter) -> list[Pair]:
        answers = backend.generate(self.planned_requests(records, augmenter))  # every record clean, then every record augmented
        n = len(records)
        return [Pair(r.record, clean[0].text, noised[0].text) for r, clean, noised in zip(records, answers[:n], answers[n:], strict=True)]


@hookimpl
def register_strategies(register: Any) -> None:
    register(Seva)

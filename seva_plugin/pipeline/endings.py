"""Why each answer of a pair ended, noted at build time (``seva inspect`` flags answers cut at
``max_new_tokens``).

A strategy returns pairs of texts; the completions they came from, and their finish reasons, stay
inside it. :class:`NotingBackend` is the build's backend as a strategy sees it: every call goes
through unchanged, and each generated answer's full text (its request's prefix included, outer
whitespace aside: CSR strips its answers) is noted with why it ended. A side of a pair whose text is such an answer gets that reason in the journal
entry's ``finish`` (``{"chosen": "length", "rejected": "eos"}``), whatever the strategy; the data
files do not change. Where one text ended twice (a CSR path continued, then ended), the later
reason counts: it is where the answer stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from seva_plugin.contract import Answer, FinishReason, GenerationRequest, ScoreRequest, Scores
from seva_plugin.interfaces import Backend
from seva_plugin.pipeline.records import Pair


class NotingBackend(Backend):
    """``backend``, noting why each answer it generates ended (per record id and full text)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.batch_size = getattr(backend, "batch_size", Backend.batch_size)
        self.ended: dict[tuple[str, str], FinishReason] = {}

    def __getattr__(self, key: str) -> Any:  # anything else a strategy reads of its backend, its name included
        return getattr(self.__dict__["backend"], key)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Answer]:
        answers = self.backend.generate(requests)
        for request, answer in zip(requests, answers, strict=False):  # a wrong count is the strategy's to find
            for completion in answer:
                self.ended[request.record.id, (request.prefix + completion.text).strip()] = completion.finish_reason
        return answers

    def score(self, requests: Sequence[ScoreRequest]) -> list[Scores]:
        return self.backend.score(requests)

    def prepare(self, requests: Sequence[GenerationRequest]) -> None:
        self.backend.prepare(requests)

    def describe(self) -> dict[str, Any]:
        return self.backend.describe()

    def close(self) -> None:
        self.backend.close()

    def finish(self, pair: Pair) -> dict[str, str]:
        """Why each side of ``pair`` ended, for the sides that are answers this backend generated."""
        sides = {"chosen": pair.chosen, "rejected": pair.rejected}
        return {side: self.ended[key] for side, text in sides.items() if (key := (pair.record.id, text.strip())) in self.ended}

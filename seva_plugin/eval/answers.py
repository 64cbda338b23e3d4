"""Asking the backend: the eval's per-batch step, the same code in one process and on each Ray worker.

A batch is images (one record each, its questions in ``meta``). ``generate`` asks every question with
``GenerationRequest.prompt``, greedily, stopping at the first "." (POPE's parser reads only the first
sentence); ``logprob`` scores "Yes" and "No" after each question (``ScoreRequest``). Rendering is
the backend's: the build's ``template``, as training renders prompts. An exception for a batch is
narrowed down to the image that raises (``pipeline.batch.bisect``), which becomes a reject.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from seva_plugin.contract import CLEAN, GenerationRequest, Sampling, ScoreRequest
from seva_plugin.errors import ConfigError
from seva_plugin.pipeline.batch import bisect
from seva_plugin.pipeline.records import LoadedRecord

GREEDY = Sampling(temperature=0.0)  # whatever the backend's do_sample: an eval answers greedily
STOP = (".",)
YES, NO = "Yes", "No"


def parse_yes_no(text: str) -> str:
    """POPE's evaluation rule (``AoiDragon/POPE`` ``evaluate.py``, also LLaVA's ``eval_pope.py``): keep
    the text before the first ".", drop commas, split on spaces; "no" when a word is exactly ``No``,
    ``no`` or ``not``, else "yes". So an empty or off-topic answer counts as yes."""
    words = text.split(".")[0].replace(",", "").split(" ")
    return "no" if any(w in ("No", "no", "not") for w in words) else "yes"


@dataclass
class ProbeWork:
    """The eval's batch work: the backend, and how to ask it."""

    backend: Any
    scoring: str
    max_new_tokens: int

    def requests(self, batch: Sequence[LoadedRecord]) -> list[GenerationRequest]:
        """What ``generate`` scoring sends for ``batch`` (also what the prefetch thread prepares)."""
        return [
            GenerationRequest(r, CLEAN, prompt=q, max_new_tokens=self.max_new_tokens, stop=STOP, sampling=GREEDY)
            for r in batch
            for q in r.record.meta["questions"]
        ]

    def process(self, batch: Sequence[LoadedRecord]) -> list[dict[str, Any]]:
        """One journal entry per image, in order: its answers, or a reject when asking raised."""
        return bisect(list(batch), self.entries)

    def entries(self, batch: Sequence[LoadedRecord]) -> list[dict[str, Any]]:
        if not batch:
            return []
        questions = [(r, q) for r in batch for q in r.record.meta["questions"]]
        if self.scoring == "generate":
            texts = [a[0].text for a in self.backend.generate(self.requests(batch))]
            answers = [{"q": q, "answer": t} for (_, q), t in zip(questions, texts, strict=True)]
        else:
            scores = self.backend.score([ScoreRequest(r, CLEAN, word, prompt=q) for r, q in questions for word in (YES, NO)])
            answers = []
            for i, (_, q) in enumerate(questions):
                yes, no = scores[2 * i].total, scores[2 * i + 1].total
                answers.append({"q": q, "answer": YES if yes > no else NO, "logprob_yes": yes, "logprob_no": no})
        by_record: dict[str, list[dict[str, Any]]] = {}
        for (r, _), a in zip(questions, answers, strict=True):
            by_record.setdefault(r.id, []).append(a)
        return [{"kind": "answers", "id": r.id, "answers": by_record[r.id]} for r in batch]

    def close(self) -> None:
        self.backend.close()


@dataclass(frozen=True)
class ProbeSpec:
    """What a worker needs to build its :class:`ProbeWork`: the backend's registry entry and keys
    (picklable, so Ray workers build the same one), the scoring and the answer length."""

    backend: tuple[Any, dict[str, Any], str, dict[str, Any]]  # (registry entry, its keys, where configured, what the eval adds)
    scoring: str
    max_new_tokens: int

    def build(self) -> ProbeWork:
        entry, params, where, context = self.backend
        backend = entry.build(params, where, **context)
        if self.scoring == "logprob" and not backend.can_score():
            raise ConfigError(f"scoring: logprob scores Yes and No (Backend.score), which backend '{backend.name}' does not serve; use hf or vllm.")
        return ProbeWork(backend, self.scoring, self.max_new_tokens)

    @property
    def backend_params(self) -> dict[str, Any]:
        return dict(self.backend[1])

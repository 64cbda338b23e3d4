"""Strategy ``rlaifv``: RLAIF-V's divide-and-conquer self-feedback (arXiv 2405.17220), one batch at a time.

For each prompt (official ``llava15_gen_data.py``, ``llama3_8b_inference.py``, ``pair_construction.py``):

1. **answers**: ``num_samples`` (10) answers sampled at ``temperature`` 0.7, at most 512 new tokens;
2. **claims**: each answer divided into atomic claims by the model itself through the official prompt
   (``claims: model``), or cut into its sentences (``claims: sentences``);
3. **questions**: each claim rewritten as a general question by the model through the official prompt
   (``questions: model``), or put into a fixed question (``questions: template``); the probe is the
   question plus " Please answer yes or no.";
4. **feedback**: the policy itself is the labeler: every probe is scored on the clean image through the
   contract's ``score`` (teacher-forced ``yes``, ``Yes``, ``no``, ``No``); a claim is accepted when
   ``P(yes) + P(Yes) > P(no) + P(No)``; an answer's score is minus its rejected claims;
5. **pairs**: every two answers whose scores differ by ``min_score_gap`` (1) or more, the higher chosen;
   one of them is kept at random (seeded by the record). ``max_shorten_ratio`` is the official length
   control (``pairing.py``).

The model's own division and questions are sampled as the official Llama-3 helpers sample them
(``feedback_temperature`` 0.2, ``feedback_top_p`` 0.9, 256 new tokens). Every request carries a seed
drawn from the record's, so a build gives the same pairs on any batch size, worker count or resume.
The pair is trained on the record's own prompt; ``Pair.scores`` holds each answer's claims, probes and
probabilities. ``seva iterate`` runs the rounds (each generating with the last round's model).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from seva_plugin import hookimpl
from seva_plugin.errors import ConfigError, show
from seva_plugin.interfaces import CLEAN, Answer, Augmenter, Backend, GenerationRequest, LoadedRecord, Pair, Sampling, ScoreRequest, Strategy, check_sampling
from seva_plugin.pipeline.records import IMAGE_TOKEN
from seva_plugin.plugins.strategies.rlaifv.pairing import Judged, candidate_pairs, pick
from seva_plugin.plugins.strategies.rlaifv.prompts import divide_prompt, parse_list, probe, sentences, template_question, to_question_prompt

CLAIMS = ("model", "sentences")
QUESTIONS = ("model", "template")


def rlaifv_seed(seed: int, what: str) -> int:
    digest = hashlib.sha256(f"rlaifv:{what}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def with_images(record: LoadedRecord, text: str) -> str:
    """A prompt of the strategy's own: the record's images first (the contract shows the model the record's images)."""
    return (IMAGE_TOKEN + "\n") * len(record.images) + text


@dataclass
class Rlaifv(Strategy):
    name = "rlaifv"
    uses_augmenter = False  # every answer and probe sees the clean image; the build's `augment` is recorded, never applied
    needs_score = True  # the labeler's yes/no probabilities come from Backend.score
    num_samples: int = 10  # official --repeat 10
    temperature: float = 0.7  # official --temperature 0.7
    top_p: float = 1.0  # official: not set
    max_new_tokens: int = 512  # official --max_tokens 512
    claims: str = "model"  # model: the official splitting prompt; sentences: the answer's sentences
    questions: str = "model"  # model: the official claim-to-question prompt; template: a fixed question
    feedback_temperature: float = 0.2  # official divide / change-question sampling: temperature 0.2 ...
    feedback_top_p: float = 0.9  # ... top_p 0.9
    feedback_max_new_tokens: int = 256  # ... max_new_tokens 256
    yes_words: list[str] = field(default_factory=lambda: ["yes", "Yes"])  # official func_yes_prob
    no_words: list[str] = field(default_factory=lambda: ["no", "No"])  # official func_no_prob
    min_score_gap: int = 1  # official diff=1
    max_shorten_ratio: float | None = None  # the official length rule (off: the official search needs the whole set; see pairing.py)
    max_rows: int = 64  # answers or scored texts per backend call

    def __post_init__(self) -> None:
        problems = []
        if self.claims not in CLAIMS:
            problems.append(f"strategy.claims must be one of {', '.join(CLAIMS)}, got {show(self.claims)}")
        if self.questions not in QUESTIONS:
            problems.append(f"strategy.questions must be one of {', '.join(QUESTIONS)}, got {show(self.questions)}")
        for key in ("num_samples", "max_new_tokens", "feedback_max_new_tokens", "min_score_gap", "max_rows"):
            if getattr(self, key) < 1:
                problems.append(f"strategy.{key} must be at least 1, got {show(getattr(self, key))}")
        if self.num_samples < 2:
            problems.append("strategy.num_samples must be at least 2: pairs are made between a prompt's answers")
        if self.temperature <= 0 and self.num_samples > 1:
            problems.append(f"strategy.temperature must be positive to sample {self.num_samples} different answers, got {show(self.temperature)}")
        if self.max_shorten_ratio is not None and not 0 <= self.max_shorten_ratio <= 1:
            problems.append(f"strategy.max_shorten_ratio must be in [0, 1] (or null), got {show(self.max_shorten_ratio)}")
        for key in ("yes_words", "no_words"):
            words = getattr(self, key)
            if not isinstance(words, list) or not words or not all(isinstance(w, str) and w for w in words):
                problems.append(f"strategy.{key} must be a non-empty list of non-empty strings, got {show(words)}")
        if problems:
            raise ConfigError("; ".join(problems) + ".")
        check_sampling(self.temperature, self.top_p, "strategy")
        check_sampling(self.feedback_temperature, self.feedback_top_p, "strategy.feedback")
        self.sampling = Sampling(self.temperature, self.top_p)
        self.feedback = Sampling(self.feedback_temperature, self.feedback_top_p)

    def planned_requests(self, records: Sequence[LoadedRecord], augmenter: Augmenter | None = None) -> list[GenerationRequest]:
        """``num_samples`` answers to each record's own prompt on its clean image."""
        return [
            GenerationRequest(r, CLEAN, n=self.num_samples, max_new_tokens=self.max_new_tokens, sampling=self.sampling, seed=rlaifv_seed(r.seed, "answers"))
            for r in records
        ]

    # -- the strategy hook -----------------------------------------------------------------
    def make_pairs(self, records: Sequence[LoadedRecord], backend: Backend, augmenter: Augmenter | None = None) -> list[Pair]:
        answers = backend.generate(self.planned_requests(records, augmenter))  # as planned (prepared ahead); backend.batch_size bounds it
        judged = [[Judged(k, c.text, [], []) for k, c in enumerate(answer) if c.text.strip()] for answer in answers]
        self._divide(backend, records, judged)
        self._ask_questions(backend, records, judged)
        self._probe(backend, records, judged)
        pairs = []
        for r, candidates in zip(records, judged, strict=True):
            usable = [j for j in candidates if j.questions]
            options = candidate_pairs(usable, self.min_score_gap, self.max_shorten_ratio)
            chosen_rejected = pick(options, rlaifv_seed(r.seed, "pick"))
            if chosen_rejected is None:
                continue  # no two answers with different scores: the build counts it as no_pair
            chosen, rejected = chosen_rejected
            scores = {
                "method": "rlaifv",
                "chosen": chosen.describe(),
                "rejected": rejected.describe(),
                "candidates": {"samples": self.num_samples, "usable": len(usable), "scores": [j.score for j in usable], "pairs": len(options)},
            }
            pairs.append(Pair(r.record, chosen.text, rejected.text, scores))
        return pairs

    # -- the steps ---------------------------------------------------------------------------
    def _divide(self, backend: Backend, records: Sequence[LoadedRecord], judged: list[list[Judged]]) -> None:
        if self.claims == "sentences":
            for candidates in judged:
                for j in candidates:
                    j.claims = sentences(j.text)
            return
        jobs = [(r, j) for r, candidates in zip(records, judged, strict=True) for j in candidates]
        requests = [self._feedback_request(r, divide_prompt(r.record.question, j.text), f"claims:{j.index}") for r, j in jobs]
        for (_, j), answer in zip(jobs, self._generate(backend, requests), strict=True):
            j.claims = parse_list(answer[0].text)

    def _ask_questions(self, backend: Backend, records: Sequence[LoadedRecord], judged: list[list[Judged]]) -> None:
        jobs = [(r, j) for r, candidates in zip(records, judged, strict=True) for j in candidates if j.claims]
        if self.questions == "template":
            written = [[template_question(c) for c in j.claims] for _, j in jobs]
        else:
            requests = [self._feedback_request(r, to_question_prompt(j.claims), f"questions:{j.index}") for r, j in jobs]
            written = [parse_list(answer[0].text) for answer in self._generate(backend, requests)]
        for (_, j), questions in zip(jobs, written, strict=True):
            probes = [probe(q) for q in questions]
            # official: an answer whose judged probes do not match its claims one to one takes part in no pair
            j.questions = probes if len(probes) == len(j.claims) and len(set(probes)) == len(probes) else []

    def _probe(self, backend: Backend, records: Sequence[LoadedRecord], judged: list[list[Judged]]) -> None:
        """``P(word)`` for every yes and no word after every distinct probe of a record, on its clean image."""
        words = [*self.yes_words, *self.no_words]
        keys = list(dict.fromkeys((i, q) for i, candidates in enumerate(judged) for j in candidates for q in j.questions))
        requests = [ScoreRequest(records[i], CLEAN, w, prompt=with_images(records[i], q)) for i, q in keys for w in words]
        probs: list[float] = []
        for start in range(0, len(requests), self.max_rows):
            probs += [math.exp(s.total) for s in backend.score(requests[start : start + self.max_rows])]
        per_probe = {key: probs[k * len(words) : (k + 1) * len(words)] for k, key in enumerate(keys)}
        yes = len(self.yes_words)
        for i, candidates in enumerate(judged):
            for j in candidates:
                j.p_yes = [sum(per_probe[(i, q)][:yes]) for q in j.questions]
                j.p_no = [sum(per_probe[(i, q)][yes:]) for q in j.questions]

    def _feedback_request(self, record: LoadedRecord, text: str, what: str) -> GenerationRequest:
        return GenerationRequest(
            record,
            CLEAN,
            prompt=with_images(record, text),
            max_new_tokens=self.feedback_max_new_tokens,
            sampling=self.feedback,
            seed=rlaifv_seed(record.seed, what),
        )

    def _generate(self, backend: Backend, requests: list[GenerationRequest]) -> list[Answer]:
        """All requests, at most ``max_rows`` answers per backend call."""
        answers: list[Answer] = []
        start = 0
        while start < len(requests):
            end, rows = start, 0
            while end < len(requests) and (end == start or rows + requests[end].n <= self.max_rows):
                rows += requests[end].n
                end += 1
            answers += backend.generate(requests[start:end])
            start = end
        return answers


@hookimpl
def register_strategies(register: Any) -> None:
    register(Rlaifv)

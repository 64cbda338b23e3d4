"""RLAIF-V's scores and pairing rule, as plain functions over judged answers (no model here).

From the official ``utils/pair_construction.py``, ``utils/get_preference_pairs.py`` and
``utils/get_pairs_filter_shorten.py`` (``github.com/RLHF-V/RLAIF-V``):

- a claim is accepted when the labeler's ``P(yes) + P(Yes) > P(no) + P(No)`` for its probe;
- an answer's score is minus its number of rejected claims (``sum(labels) - len(labels)``); an answer
  with no claims has no score and takes part in no pair;
- every two answers of a prompt whose scores differ by at least ``diff`` (1) make a candidate pair,
  the higher score chosen; equal scores make none;
- a pair whose texts are equal is dropped, and so (with a ratio set) is one whose chosen answer is
  shorter than its rejected one by more than ``ratio`` of the rejected answer's words;
- some candidate pairs are kept per prompt at random (the official keeps 2; a build keeps one pair
  per record).

``balanced_ratio`` is the official search for that ratio over a whole set of pairs.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any


@dataclass
class Judged:
    """One sampled answer with its claims, their probe questions and the labeler's probabilities."""

    index: int  # answer k of the prompt's samples
    text: str
    claims: list[str]
    questions: list[str]
    p_yes: list[float] = field(default_factory=list)
    p_no: list[float] = field(default_factory=list)

    @property
    def accepted(self) -> list[bool]:
        return [y > n for y, n in zip(self.p_yes, self.p_no, strict=True)]

    @property
    def score(self) -> int:
        """Minus the number of rejected claims."""
        return -sum(not a for a in self.accepted)

    @property
    def words(self) -> int:
        return len(self.text.split())

    def describe(self) -> dict[str, Any]:
        """What ``Pair.scores`` records of an answer (the same keys for every answer)."""
        return {
            "sample": self.index,
            "score": self.score,
            "words": self.words,
            "claims": list(self.claims),
            "questions": list(self.questions),
            "p_yes": [float(f"{p:.6g}") for p in self.p_yes],
            "p_no": [float(f"{p:.6g}") for p in self.p_no],
            "accepted": self.accepted,
        }


def shortened_too_much(chosen_words: int, rejected_words: int, ratio: float) -> bool:
    """The official length rule: ``(rejected - chosen) / rejected > ratio``."""
    return rejected_words > 0 and (rejected_words - chosen_words) / rejected_words > ratio


def candidate_pairs(answers: list[Judged], diff: int = 1, ratio: float | None = None) -> list[tuple[Judged, Judged]]:
    """``(chosen, rejected)`` for every two answers (in sample order) whose scores differ by at least
    ``diff``; equal texts and, with ``ratio``, too-short chosen answers left out."""
    pairs = []
    for a, b in combinations(answers, 2):
        if abs(a.score - b.score) < diff:
            continue
        chosen, rejected = (b, a) if a.score < b.score else (a, b)
        if chosen.text.strip() == rejected.text.strip():
            continue
        if ratio is not None and shortened_too_much(chosen.words, rejected.words, ratio):
            continue
        pairs.append((chosen, rejected))
    return pairs


def pick(pairs: list[tuple[Judged, Judged]], seed: int) -> tuple[Judged, Judged] | None:
    """One candidate pair at random (seeded by the record), or ``None`` without one."""
    return random.Random(seed).choice(pairs) if pairs else None


def balanced_ratio(pairs: list[tuple[int, int]]) -> float:
    """The official search (``cal_pair_search_difflen``) over ``(chosen words, rejected words)`` pairs:
    of the ratios 0, 0.02, ..., 0.98, the one whose kept pairs have the closest mean chosen and
    rejected lengths (relative to the rejected mean); the first such ratio on ties."""
    best, best_gap = 0.0, math.inf
    for step in range(50):
        ratio = step * 0.02
        kept = [(c, r) for c, r in pairs if not shortened_too_much(c, r, ratio)]
        if not kept:
            continue
        win, lose = sum(c for c, _ in kept) / len(kept), sum(r for _, r in kept) / len(kept)
        gap = abs(win - lose) / lose if lose else math.inf
        if gap < best_gap:
            best, best_gap = ratio, gap
    return best

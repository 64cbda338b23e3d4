"""CSR's scores and pair selection, as plain functions over finished candidate paths.

No torch here: the search in ``search.py`` produces the numbers, this
module turns them into rewards, ranks and a (chosen, rejected) choice, so the rules can be read
and tested on their own.

A candidate is a path of sentences (``Step``). Each step carries

* ``language``: the model's own length-normalised log-probability of the sentence (mean token
  log-probability, the sentence's stop token included);
* ``visual``: the CLIP image-text score of the sentence, ``100 * cos(image, sentence)``;
* ``rank_language`` / ``rank_visual``: the sentence's rank among its siblings (the proposals
  made from the same parent in the same step), ``(position + 1) / n`` after sorting by score,
  best first, so 1/n is the best sibling and 1 the worst (the official ``calculate_ranks``).

Two ways to score a path (see ``docs/csr.md``):

* ``paper``: sentence reward ``lam * visual + (1 - lam) * language``; response reward is the sum
  of sentence rewards (``aggregate="mean"`` divides by the number of sentences). Higher is better.
* ``repo``: the official ``construct.py`` rank fusion ``(1 - alpha) * rank_language + alpha *
  rank_visual`` summed over the steps and divided by ``steps + 1`` (the official path also counts
  the root node). Lower is better.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
MODES = ("paper", "repo")
AGGREGATES = ("sum", "mean")


@dataclass
class Step:
    text: str
    language: float
    visual: float
    rank_language: float = 1.0
    rank_visual: float = 1.0
    tokens: tuple[int, ...] = ()  # the sentence's token ids, its stop token included


@dataclass
class Candidate:
    """One finished response: its text and the steps (sentences) it was built from."""

    text: str
    steps: list[Step] = field(default_factory=list)
    order: int = 0  # creation order, the deterministic tie-break


def sentence_reward(step: Step, lam: float) -> float:
    return lam * step.visual + (1.0 - lam) * step.language


def paper_reward(steps: Sequence[Step], lam: float, aggregate: str = "sum") -> float:
    total = sum(sentence_reward(s, lam) for s in steps)
    return total / len(steps) if aggregate == "mean" and steps else total


def rank_score(steps: Sequence[Step], alpha: float) -> float:
    """The official path score: fused sibling ranks summed over steps, over (steps + 1). Lower is better."""
    fused = sum((1.0 - alpha) * s.rank_language + alpha * s.rank_visual for s in steps)
    return fused / (len(steps) + 1)


def sibling_ranks(values: Sequence[float]) -> list[float]:
    """``(position + 1) / n`` after a stable sort by value, highest first (the official rule)."""
    n = len(values)
    order = sorted(range(n), key=lambda i: -values[i])
    ranks = [0.0] * n
    for position, i in enumerate(order):
        ranks[i] = (position + 1) / n
    return ranks


def prune(items: list[T], key: Callable[[T], float], keep_best: int, keep_worst: int) -> list[T]:
    """The official survivor rule: the ``keep_best`` highest and ``keep_worst`` lowest by ``key``.

    Keeping the worst paths alive is deliberate: the rejected answer is grown from them.
    """
    if len(items) <= keep_best + keep_worst:
        return list(items)
    ranked = sorted(items, key=key, reverse=True)  # stable: ties keep creation order
    return ranked[:keep_best] + (ranked[len(ranked) - keep_worst :] if keep_worst else [])


def select_pair(candidates: Sequence[Candidate], mode: str, lam: float, alpha: float, aggregate: str = "sum") -> tuple[Candidate, Candidate] | None:
    """``(chosen, rejected)`` among finished candidates, or ``None`` when no two texts differ.

    paper: chosen has the highest reward, rejected the lowest. repo: chosen has the lowest
    rank score, rejected the highest. Ties go to the earlier candidate for chosen and the later
    one for rejected, so the choice never depends on dict or set order.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "paper":
        goodness = [paper_reward(c.steps, lam, aggregate) for c in candidates]
    else:
        goodness = [-rank_score(c.steps, alpha) for c in candidates]
    order = sorted(range(len(candidates)), key=lambda i: (-goodness[i], candidates[i].order))
    if not order:
        return None
    best = candidates[order[0]]
    for i in reversed(order[1:]):
        if candidates[i].text.strip() != best.text.strip():
            return best, candidates[i]
    return None


def finite(x: float, floor: float = -1e4) -> float:
    """JSON-safe float: ``datasets`` cannot read NaN or Infinity back."""
    if math.isnan(x):
        return floor
    return float(min(max(x, floor), -floor))


def describe(candidate: Candidate, lam: float, alpha: float, aggregate: str) -> dict[str, Any]:
    """The per-side score record written into ``Pair.scores`` (same keys for every record)."""
    steps = candidate.steps
    n = len(steps) or 1
    return {
        "reward": round(finite(paper_reward(steps, lam, aggregate)), 6),
        "rank_score": round(finite(rank_score(steps, alpha)), 6),
        "language": round(finite(sum(s.language for s in steps) / n), 6),
        "visual": round(finite(sum(s.visual for s in steps) / n), 6),
        "sentences": len(steps),
        "language_steps": [round(finite(s.language), 6) for s in steps],
        "visual_steps": [round(finite(s.visual), 6) for s in steps],
    }

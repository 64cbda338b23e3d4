"""CSR's sentence-by-sentence candidate search, written against the generation contract alone.

Each step asks the backend to *continue every live path*: one request per path, its answer so far
as the prefix, ``num_proposals`` sampled answers, stopping at a sentence end, with
log-probabilities. Every proposal gets a language score (the model's own mean token
log-probability) and a visual score (CLIP); the ``keep_best`` highest and ``keep_worst`` lowest
paths survive (``scoring.prune``). Finished paths are the candidates.

A path's sampling seed comes from the record seed and the path's place in the search tree, so
the random draws never depend on batch size, order, resume or the backend's batching (the batch's
shape can still move floating-point rounding: see docs/csr.md).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from seva_plugin.interfaces import CLEAN, Answer, Backend, GenerationRequest, LoadedRecord, Sampling
from seva_plugin.plugins.strategies.csr.clip import ClipScorer
from seva_plugin.plugins.strategies.csr.scoring import Candidate, Step, paper_reward, prune, sibling_ranks

if TYPE_CHECKING:
    from seva_plugin.plugins.strategies.csr.strategy import Csr


@dataclass
class Path:
    text: str  # the answer so far (the prefix of the next step)
    steps: list[Step]
    key: str  # place in the search tree, e.g. "r.3.0"; seeds the next proposals
    language_sum: float
    final: bool = False
    closed: bool = False


@dataclass
class Proposal:
    text: str  # the sentence as generated (a stop string included, an end-of-sequence token not)
    language: float  # mean log-probability of its tokens
    ended: str  # "stop" (sentence end), "eos" or "length"
    tokens: tuple[int, ...]
    index: int


@dataclass
class RecordSearch:
    loaded: Any  # LoadedRecord
    image_features: Any
    live: list[Path] = field(default_factory=lambda: [Path("", [], "r", 0.0)])
    finals: list[Candidate] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=lambda: {"depth": 0, "proposals": 0, "generated_tokens": 0, "dropped_sentences": 0})


@dataclass
class SearchResult:
    candidates: list[Candidate]
    stats: dict[str, Any]


def path_seed(record_seed: int, key: str) -> int:
    digest = hashlib.sha256(f"csr:{record_seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def proposals(answer: Answer) -> list[Proposal]:
    return [Proposal(c.text, sum(c.logprobs) / len(c.logprobs) if c.logprobs else 0.0, c.finish_reason, tuple(c.token_ids), k) for k, c in enumerate(answer)]


_REPEATED_WORD = re.compile(r"\b(\w+)\b(?:\s+\1\b){5,}")
_REPEATED_CHAR = re.compile(r"(\S)(?:\s*\1){10,}")


def degenerate(text: str) -> bool:
    """The official clean-up's repetition checks: a word six times in a row, one character eleven
    times in a row, or more than five newlines."""
    return bool(_REPEATED_WORD.search(text) or _REPEATED_CHAR.search(text) or text.count("\n") > 5)


class Search:
    """One batch of records searched together; ``run(backend)`` returns each record's candidates."""

    def __init__(self, strategy: Csr, records: Sequence[LoadedRecord], clip: ClipScorer) -> None:
        self.s = strategy
        self.clip = clip
        self.states = [RecordSearch(r, clip.image_features(r.images)) for r in records]

    def run(self, backend: Backend) -> list[SearchResult]:
        depth = 0
        while any(st.live for st in self.states):
            depth += 1
            jobs = [(st, path) for st in self.states for path in st.live]
            for st in self.states:
                if st.live:
                    st.stats["depth"] = depth
            answers = self._ask(backend, [self._request(st, path) for st, path in jobs])
            self._grow(jobs, answers)
        return [SearchResult(st.finals, st.stats) for st in self.states]

    def _request(self, state: RecordSearch, path: Path) -> GenerationRequest:
        s = self.s
        return GenerationRequest(
            record=state.loaded,
            view=CLEAN,
            prefix=path.text,
            n=s.num_proposals,
            stop=tuple(s.sentence_end),
            max_new_tokens=s.max_sentence_tokens,
            sampling=Sampling(s.temperature, s.top_p),
            seed=path_seed(state.loaded.seed, path.key),
            logprobs=True,
        )

    def _ask(self, backend: Backend, requests: list[GenerationRequest]) -> list[Answer]:
        """All requests, at most ``max_rows`` answers per call (the KV cache grows with rows x prompt)."""
        per_call = max(1, self.s.max_rows // self.s.num_proposals)
        answers: list[Answer] = []
        for start in range(0, len(requests), per_call):
            answers += backend.generate(requests[start : start + per_call])
        return answers

    def _grow(self, jobs: list[tuple[RecordSearch, Path]], answers: list[Answer]) -> None:
        """Score the proposals, extend their paths, close finished ones and prune the rest."""
        s = self.s
        valid = []  # (state, parent, proposal, sentence)
        for (state, parent), answer in zip(jobs, answers, strict=True):
            seen = set()
            for prop in proposals(answer):
                state.stats["proposals"] += 1
                state.stats["generated_tokens"] += len(prop.tokens)
                sentence = prop.text.strip()
                if sentence in seen and sentence:
                    continue  # the same sentence twice from one parent: keep one
                seen.add(sentence)
                if prop.ended == "eos" and not sentence:
                    if parent.steps and not parent.closed:
                        parent.closed = True  # the model ends the answer here: the parent is a candidate
                        self._finish(state, parent)
                    continue
                if len(sentence) < s.min_sentence_chars or (s.drop_degenerate and degenerate(sentence)):
                    state.stats["dropped_sentences"] += 1
                    continue
                valid.append((state, parent, prop, sentence))

        visual = self.clip.text_scores([v[3] for v in valid], [v[0].image_features for v in valid])
        siblings: dict[tuple[int, str], list[int]] = {}
        for n, (state, parent, _, _) in enumerate(valid):
            siblings.setdefault((id(state), parent.key), []).append(n)
        children: dict[int, list[Path]] = {id(st): [] for st in self.states}
        for members in siblings.values():
            rank_t = sibling_ranks([valid[n][2].language for n in members])
            rank_c = sibling_ranks([visual[n] for n in members])
            for j, n in enumerate(members):
                state, parent, prop, sentence = valid[n]
                step = Step(sentence, prop.language, visual[n], rank_t[j], rank_c[j], prop.tokens)
                child = Path(parent.text + prop.text, parent.steps + [step], f"{parent.key}.{prop.index}", parent.language_sum + prop.language)
                child.final = bool(
                    prop.ended == "eos" or len(child.text.strip()) >= s.max_response_chars or (s.max_sentences and len(child.steps) >= s.max_sentences)
                )
                children[id(state)].append(child)

        for state in self.states:
            mine = children[id(state)]
            for child in mine:
                if child.final:
                    self._finish(state, child)
            state.live = prune([c for c in mine if not c.final], self._search_key, s.keep_best, s.keep_worst)

    def _search_key(self, path: Path) -> float:
        """What ranks live paths: the paper's reward, or (repo) the summed language score as the official sampler."""
        if self.s.mode == "paper":
            return paper_reward(path.steps, self.s.reward_lambda, self.s.aggregate)
        return path.language_sum

    @staticmethod
    def _finish(state: RecordSearch, path: Path) -> None:
        state.finals.append(Candidate(path.text.strip(), list(path.steps), order=len(state.finals)))

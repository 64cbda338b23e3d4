"""Strategy ``csr``: Calibrated Self-Rewarding (arXiv 2405.14622) as one batched search.

The model answers sentence by sentence. At each step every live path gets ``num_proposals``
next sentences (a sentence ends right after the first ``sentence_end`` character, at end of sequence, or
after ``max_sentence_tokens``); every proposal gets a language score (the model's own mean token
log-probability) and a visual score (``100 * cos`` between CLIP's image and sentence embeddings);
then the ``keep_best`` highest and ``keep_worst`` lowest paths survive. Finished paths are the
candidates; the best is ``chosen``, the worst ``rejected`` (``scoring.select_pair``).

The search (``search.py``) talks to the backend only through the generation contract: each
step is "continue these prefixes, ``num_proposals`` sampled answers each, stop at a sentence end,
with log-probabilities", which every backend serves (``hf``; ``vllm`` with prefix caching and
parallel sampling). CLIP scoring stays here, in the strategy.

Diversity. The official code proposes sentences with diverse (group) beam search, which
transformers 5 moved out of its core (to a hub ``custom_generate`` repo). Here each proposal is a
*sample* from the model (temperature / nucleus), seeded by the record and the path's place in
the search tree; its language score is the log-probability under the *unscaled* model, so it is
the model's likelihood whatever the temperature.

The augmenter of the build config is not used (CSR needs no image augmentation).
See ``docs/csr.md`` for the official code's behaviour and every difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from seva_plugin import hookimpl
from seva_plugin.errors import ConfigError, show
from seva_plugin.interfaces import Augmenter, Backend, LoadedRecord, Pair, Strategy
from seva_plugin.pipeline.model_paths import check_model_path
from seva_plugin.plugins.strategies.csr.clip import ClipScorer
from seva_plugin.plugins.strategies.csr.scoring import AGGREGATES, MODES, describe, select_pair
from seva_plugin.plugins.strategies.csr.search import Search, SearchResult

DEFAULT_CLIP = "openai/clip-vit-large-patch14-336"


@dataclass
class Csr(Strategy):
    name = "csr"
    uses_augmenter = False  # the build's `augment` is accepted but never applied
    clip_model: str = DEFAULT_CLIP  # CLIP for the visual score (official: clip-vit-large-patch14-336)
    mode: str = "paper"  # paper: lambda-weighted reward guides search and choice; repo: official rank fusion
    reward_lambda: float = 0.9  # paper mode: weight of the visual score in a sentence's reward
    clip_alpha: float = 0.9  # repo mode: weight of the CLIP rank in the fused rank (official --clip_alpha 0.9)
    aggregate: str = "sum"  # paper mode: response reward = sum (paper) or mean of sentence rewards
    num_proposals: int = 5  # next-sentence proposals per live path and step (official: 5 returned beams)
    keep_best: int = 1  # survivors per step: the best ... (official num_beams=5: int(5/2)-1 = 1)
    keep_worst: int = 2  # ... and the worst (official: int(5/2) = 2)
    sentence_end: str = "."  # a token whose text ends in one of these characters ends a sentence (official: '.')
    max_sentence_tokens: int = 70  # official max_new_tokens per sentence
    max_response_chars: int = 1024  # official max_length (the official code also counts the prompt)
    max_sentences: int = 0  # 0: no cap besides max_response_chars (the official code has none)
    min_sentence_chars: int = 4  # shorter sentences are dropped, as the official scorer does
    drop_degenerate: bool = True  # drop repeated-word / repeated-character / many-newline sentences (official clean_tree)
    temperature: float = 1.0  # proposal sampling temperature (scores always use the unscaled model)
    top_p: float = 0.9  # nucleus for proposal sampling
    max_rows: int = 32  # answers per backend call (live paths x proposals over the batch); KV cache ~ rows x prompt
    clip_batch_size: int = 64
    clip_device: str | None = None  # default: cuda when present, else cpu

    def __post_init__(self) -> None:
        problems = []
        if self.mode not in MODES:
            problems.append(f"strategy.mode must be one of {', '.join(MODES)}, got {show(self.mode)}")
        if self.aggregate not in AGGREGATES:
            problems.append(f"strategy.aggregate must be one of {', '.join(AGGREGATES)}, got {show(self.aggregate)}")
        for key in ("reward_lambda", "clip_alpha"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                problems.append(f"strategy.{key} must be in [0, 1], got {show(getattr(self, key))}")
        for key in ("num_proposals", "max_sentence_tokens", "max_response_chars", "max_rows", "clip_batch_size"):
            if getattr(self, key) < 1:
                problems.append(f"strategy.{key} must be at least 1, got {show(getattr(self, key))}")
        for key in ("keep_best", "keep_worst", "max_sentences", "min_sentence_chars"):
            if getattr(self, key) < 0:
                problems.append(f"strategy.{key} must not be negative, got {show(getattr(self, key))}")
        if self.keep_best + self.keep_worst < 1:
            problems.append("strategy.keep_best + strategy.keep_worst must be at least 1")
        if not self.temperature > 0:
            problems.append(f"strategy.temperature must be positive, got {show(self.temperature)}")
        if not 0.0 < self.top_p <= 1.0:
            problems.append(f"strategy.top_p must be in (0, 1], got {show(self.top_p)}")
        if not self.sentence_end:
            problems.append("strategy.sentence_end must hold at least one character")
        if problems:
            raise ConfigError("; ".join(problems) + ".")
        check_model_path(self.clip_model, "strategy.clip_model")

    # -- the strategy hook -----------------------------------------------------------------
    def make_pairs(self, records: Sequence[LoadedRecord], backend: Backend, augmenter: Augmenter | None = None) -> list[Pair]:
        pairs = []
        for loaded, result in zip(records, self.search(records, backend), strict=True):
            chosen_rejected = select_pair(result.candidates, self.mode, self.reward_lambda, self.clip_alpha, self.aggregate)
            if chosen_rejected is None:
                continue  # fewer than two different finished answers: the build counts it as no_pair
            chosen, rejected = chosen_rejected
            scores = {
                "method": "csr",
                "mode": self.mode,
                "chosen": describe(chosen, self.reward_lambda, self.clip_alpha, self.aggregate),
                "rejected": describe(rejected, self.reward_lambda, self.clip_alpha, self.aggregate),
                "search": {**result.stats, "candidates": len(result.candidates)},
            }
            pairs.append(Pair(loaded.record, chosen.text, rejected.text, scores))
        return pairs

    def search(self, records: Sequence[LoadedRecord], backend: Backend) -> list[SearchResult]:
        """Every record's finished candidates, with per-record cost counters."""
        return Search(self, records, self.clip).run(backend)

    @cached_property
    def clip(self) -> ClipScorer:
        """This strategy's CLIP scorer, loaded on first use (a Ray worker loads its own)."""
        import torch

        device = self.clip_device or ("cuda" if torch.cuda.is_available() else "cpu")
        return ClipScorer(self.clip_model, device, self.clip_batch_size)


@hookimpl
def register_strategies(register: Any) -> None:
    register(Csr)

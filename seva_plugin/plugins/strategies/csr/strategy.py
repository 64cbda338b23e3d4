"""Strategy ``csr``: Calibrated Self-Rewarding (arXiv 2405.14622) as one batched search.

The model answers sentence by sentence. At each step every live path gets ``num_proposals``
next sentences (a sentence ends at a token ending in ``sentence_end``, at end of sequence, or
after ``max_sentence_tokens``); every proposal gets a language score (the model's own mean token
log-probability) and a visual score (``100 * cos`` between CLIP's image and sentence embeddings);
then the ``keep_best`` highest and ``keep_worst`` lowest paths survive. Finished paths are the
candidates; the best is ``chosen``, the worst ``rejected`` (``csr_scoring.select_pair``).

Diversity. The official code proposes sentences with diverse (group) beam search, which
transformers 5 moved out of its core (to a hub ``custom_generate`` repo). Here each proposal is a
*sample*: one row per (path, proposal) in a single ``generate`` call per sentence step, over every
live path of every record in the batch. A logits processor samples each row with its own
``torch.Generator`` (Gumbel-max over the temperature / nucleus-scaled distribution) and records
the log-probability of the sampled token under the *unscaled* distribution, so the language score
is the model's likelihood whatever the temperature. The row seed comes from the record seed and
the row's place in the search tree, so the data never depends on batch size, order or resume.

The augmenter of the build config is not used (CSR needs no image augmentation).
See ``docs/csr.md`` for the official code's behaviour and every difference.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Any

from seva_plugin import hookimpl
from seva_plugin.build.records import Pair
from seva_plugin.errors import ConfigError
from seva_plugin.interfaces import Strategy
from seva_plugin.plugins.strategies.csr.scoring import AGGREGATES, MODES, Candidate, Step, describe, paper_reward, prune, select_pair, sibling_ranks

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
    max_rows: int = 32  # sequences per generate call (rows = live paths x proposals over the batch); KV cache ~ rows x prompt
    clip_batch_size: int = 64

    def __post_init__(self):
        problems = []
        if self.mode not in MODES:
            problems.append(f"strategy.mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.aggregate not in AGGREGATES:
            problems.append(f"strategy.aggregate must be one of {', '.join(AGGREGATES)}, got {self.aggregate!r}")
        for key in ("reward_lambda", "clip_alpha"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                problems.append(f"strategy.{key} must be in [0, 1], got {getattr(self, key)!r}")
        for key in ("num_proposals", "max_sentence_tokens", "max_response_chars", "max_rows", "clip_batch_size"):
            if getattr(self, key) < 1:
                problems.append(f"strategy.{key} must be at least 1, got {getattr(self, key)!r}")
        for key in ("keep_best", "keep_worst", "max_sentences", "min_sentence_chars"):
            if getattr(self, key) < 0:
                problems.append(f"strategy.{key} must not be negative, got {getattr(self, key)!r}")
        if self.keep_best + self.keep_worst < 1:
            problems.append("strategy.keep_best + strategy.keep_worst must be at least 1")
        if not self.temperature > 0:
            problems.append(f"strategy.temperature must be positive, got {self.temperature!r}")
        if not 0.0 < self.top_p <= 1.0:
            problems.append(f"strategy.top_p must be in (0, 1], got {self.top_p!r}")
        if not self.sentence_end:
            problems.append("strategy.sentence_end must hold at least one character")
        if problems:
            raise ConfigError("; ".join(problems) + ".")
        _check_clip_path(self.clip_model)
        self._clip: ClipScorer | None = None
        self._stop_ids: tuple | None = None  # (tokenizer, ids)

    # -- the strategy hook -----------------------------------------------------------------
    def make_pairs(self, records, backend, augmenter=None) -> list[Pair]:
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

    # -- the search ------------------------------------------------------------------------
    def search(self, records, backend) -> list[SearchResult]:
        """Every record's finished candidates, with per-record cost counters."""
        for method in ("loaded", "prompt_ids", "mm_inputs", "batch_inputs"):
            if not hasattr(backend, method):
                raise ConfigError(f"strategy 'csr' needs a backend with {method} (the 'hf' backend); backend '{getattr(backend, 'name', backend)}' has none.")
        model, tokenizer = backend.loaded.model, backend.loaded.tokenizer
        clip = self.clip_scorer(model.device)
        states = []
        for loaded in records:
            ids = backend.prompt_ids(loaded.record.prompt, loaded.images)
            states.append(_RecordState(loaded=loaded, prompt_ids=ids, mm=backend.mm_inputs([loaded.images], [ids]), image_features=clip.image_features(loaded.images)))
        for state in states:
            state.live = [_Path(tokens=[], steps=[], key="r", language_sum=0.0)]

        depth = 0
        while any(s.live for s in states):
            depth += 1
            for s in states:
                if s.live:
                    s.stats["depth"] = depth
            rows = [(i, path, k) for i, s in enumerate(states) for path in s.live for k in range(self.num_proposals)]
            proposals = self._propose(rows, states, backend)
            self._grow(rows, proposals, states, tokenizer, clip)
        return [SearchResult(s.finals, s.stats) for s in states]

    def _propose(self, rows, states, backend) -> list[_Proposal]:
        """One sentence per row: ``generate`` over chunks of at most ``max_rows`` rows."""
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        model, tokenizer = backend.loaded.model, backend.loaded.tokenizer
        gen = backend.generation_kwargs()
        eos = gen["eos_token_id"]
        eos = set(eos if isinstance(eos, list) else [eos])
        stop_ids = self.sentence_stop_ids(tokenizer)
        stop_set = set(stop_ids)
        out: list[_Proposal] = []
        for start in range(0, len(rows), self.max_rows):
            chunk = rows[start : start + self.max_rows]
            ids = [states[i].prompt_ids + path.tokens for i, path, _ in chunk]
            inputs = backend.batch_inputs(ids, cat_mm([states[i].mm for i, _, _ in chunk]))
            seeds = [row_seed(states[i].loaded.seed, path.key, k) for i, path, k in chunk]
            sampler = make_sampler(seeds, self.temperature, self.top_p, banned=self.banned_ids(tokenizer, model, eos), vocab_limit=len(tokenizer))
            stopper = make_stopper(stop_ids, model.device)
            with torch.inference_mode():
                result = model.generate(
                    **inputs,
                    max_new_tokens=self.max_sentence_tokens,
                    do_sample=False,  # the sampler picks the token; greedy takes it
                    eos_token_id=gen["eos_token_id"],
                    pad_token_id=gen["pad_token_id"],
                    repetition_penalty=1.0,
                    no_repeat_ngram_size=0,
                    logits_processor=LogitsProcessorList([sampler]),
                    stopping_criteria=StoppingCriteriaList([stopper]),
                    return_dict_in_generate=True,
                )
            new = result.sequences[:, inputs["input_ids"].shape[1] :].tolist()
            logprobs = torch.stack(sampler.logprobs, dim=1).tolist() if sampler.logprobs else [[] for _ in chunk]
            for (_, _, k), row_tokens, row_lp in zip(chunk, new, logprobs, strict=True):
                out.append(parse_row(row_tokens, row_lp, eos, stop_set, k))
        return out

    def _grow(self, rows, proposals, states, tokenizer, clip) -> None:
        """Score the proposals, extend their paths, close finished ones and prune the rest."""
        groups: dict[tuple[int, str], list] = {}
        for (i, path, _), prop in zip(rows, proposals, strict=True):
            states[i].stats["proposals"] += 1
            states[i].stats["generated_tokens"] += len(prop.tokens)
            groups.setdefault((i, path.key), [path, []])[1].append(prop)

        valid = []  # (record index, parent, proposal, sentence text)
        for (i, _), (parent, props) in groups.items():
            seen = set()
            for prop in props:
                if tuple(prop.tokens) in seen:
                    continue  # the same sentence twice from one parent: keep one
                seen.add(tuple(prop.tokens))
                text = tokenizer.decode(prop.text_tokens, skip_special_tokens=True).strip()
                if prop.ended == "eos" and not text:
                    if parent.steps and not parent.closed:
                        parent.closed = True  # the model ends the answer here: the parent is a candidate
                        self._finish(states[i], parent, tokenizer)
                    continue
                if len(text) < self.min_sentence_chars or (self.drop_degenerate and degenerate(text)):
                    states[i].stats["dropped_sentences"] += 1
                    continue
                valid.append((i, parent, prop, text))

        visual = clip.text_scores([v[3] for v in valid], [states[v[0]].image_features for v in valid])
        siblings: dict[tuple[int, str], list[int]] = {}
        for n, (i, parent, _, _) in enumerate(valid):
            siblings.setdefault((i, parent.key), []).append(n)
        children: dict[int, list[_Path]] = {i: [] for i in range(len(states))}
        for (i, _), members in siblings.items():
            language = [valid[n][2].language for n in members]
            rank_t = sibling_ranks(language)
            rank_c = sibling_ranks([visual[n] for n in members])
            for j, n in enumerate(members):
                _, parent, prop, text = valid[n]
                step = Step(text, prop.language, visual[n], rank_t[j], rank_c[j], tuple(prop.tokens))
                child = _Path(
                    tokens=parent.tokens + prop.text_tokens,
                    steps=parent.steps + [step],
                    key=f"{parent.key}.{prop.index}",
                    language_sum=parent.language_sum + prop.language,
                )
                text_len = len(tokenizer.decode(child.tokens, skip_special_tokens=True).strip())
                child.final = (
                    prop.ended == "eos"
                    or text_len >= self.max_response_chars
                    or len(child.tokens) >= self.max_response_chars  # a token is at least one character
                    or (self.max_sentences and len(child.steps) >= self.max_sentences)
                )
                children[i].append(child)

        for i, state in enumerate(states):
            finished = [c for c in children[i] if c.final]
            for child in finished:
                self._finish(state, child, tokenizer)
            growing = [c for c in children[i] if not c.final]
            state.live = prune(growing, self._search_key, self.keep_best, self.keep_worst)

    def _search_key(self, path: _Path) -> float:
        """What ranks live paths: the paper's reward, or (repo) the summed language score as the official sampler."""
        if self.mode == "paper":
            return paper_reward(path.steps, self.reward_lambda, self.aggregate)
        return path.language_sum

    def _finish(self, state: _RecordState, path: _Path, tokenizer) -> None:
        text = tokenizer.decode(path.tokens, skip_special_tokens=True).strip()
        state.finals.append(Candidate(text, list(path.steps), order=len(state.finals), tokens=list(path.tokens)))

    # -- helpers ---------------------------------------------------------------------------
    def sentence_stop_ids(self, tokenizer) -> list[int]:
        """Ids of the tokens whose text (whitespace stripped) ends in a ``sentence_end`` character."""
        if self._stop_ids is None or self._stop_ids[0] is not tokenizer:
            special = set(tokenizer.all_special_ids)
            ends = tuple(self.sentence_end)
            ids = [i for i in range(len(tokenizer)) if i not in special and tokenizer.decode([i]).strip().endswith(ends)]
            if not ids:
                raise ConfigError(f"no token of the tokenizer ends in {self.sentence_end!r} (strategy.sentence_end).")
            self._stop_ids = (tokenizer, ids)
        return self._stop_ids[1]

    def banned_ids(self, tokenizer, model, eos: set[int]) -> list[int]:
        """Special tokens a proposal may not contain (end-of-sequence aside): fed back as the next
        step's prefix, an ``<image>`` placeholder would break the image-token count, a pad or BOS
        token the text."""
        banned = set(tokenizer.all_special_ids)
        banned |= {i for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(tok, "special", False)}
        for attr in ("image_token_id", "image_token_index", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
            value = getattr(model.config, attr, None)
            if isinstance(value, int):
                banned.add(value)
        return sorted(banned - eos)

    def clip_scorer(self, device) -> ClipScorer:
        """The CLIP scorer, loaded once per process and device (``seva iterate`` reuses it every round)."""
        if self._clip is None:
            key = (self.clip_model, str(device))
            if key not in _CLIP_SCORERS:
                _CLIP_SCORERS.clear()  # keep at most one CLIP in memory
                _CLIP_SCORERS[key] = ClipScorer(self.clip_model, device)
            self._clip = _CLIP_SCORERS[key]
            self._clip.batch_size = self.clip_batch_size
        return self._clip


# -- search records ------------------------------------------------------------------------
@dataclass
class _Path:
    tokens: list[int]  # generated tokens so far (no end-of-sequence token)
    steps: list[Step]
    key: str  # place in the search tree, e.g. "r.3.0"; seeds the next proposals
    language_sum: float
    final: bool = False
    closed: bool = False


@dataclass
class _Proposal:
    tokens: list[int]  # the sentence's tokens, stop token included
    text_tokens: list[int]  # without an end-of-sequence token
    language: float  # mean log-probability of ``tokens``
    ended: str  # "stop" (sentence end), "eos" or "length"
    index: int = 0


@dataclass
class _RecordState:
    loaded: Any
    prompt_ids: list[int]
    mm: dict
    image_features: Any
    live: list[_Path] = field(default_factory=list)
    finals: list[Candidate] = field(default_factory=list)
    stats: dict = field(default_factory=lambda: {"depth": 0, "proposals": 0, "generated_tokens": 0, "dropped_sentences": 0})


@dataclass
class SearchResult:
    candidates: list[Candidate]
    stats: dict


def parse_row(tokens: list[int], logprobs: list[float], eos: set[int], stops: set[int], index: int = 0) -> _Proposal:
    """Cut a generated row at its first end-of-sequence or sentence-end token (later tokens are padding)."""
    for n, token in enumerate(tokens):
        if token in eos:
            return _Proposal(tokens[: n + 1], tokens[:n], _mean(logprobs[: n + 1]), "eos", index)
        if token in stops:
            return _Proposal(tokens[: n + 1], tokens[: n + 1], _mean(logprobs[: n + 1]), "stop", index)
    return _Proposal(list(tokens), list(tokens), _mean(logprobs[: len(tokens)]), "length", index)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def row_seed(record_seed: int, key: str, k: int) -> int:
    digest = hashlib.sha256(f"csr:{record_seed}:{key}:{k}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


_REPEATED_WORD = re.compile(r"\b(\w+)\b(?:\s+\1\b){5,}")
_REPEATED_CHAR = re.compile(r"(\S)(?:\s*\1){10,}")


def degenerate(text: str) -> bool:
    """The official clean-up's repetition checks: a word six times in a row, one character eleven
    times in a row, or more than five newlines."""
    return bool(_REPEATED_WORD.search(text) or _REPEATED_CHAR.search(text) or text.count("\n") > 5)


def _check_clip_path(path: str) -> None:
    looks_local = path.startswith((".", "/", "~")) or path.count("/") != 1
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ConfigError(f"strategy.clip_model: {path} has no config.json.")
    elif looks_local:
        raise ConfigError(f"strategy.clip_model: CLIP model path not found: {path}")


# -- generation pieces ---------------------------------------------------------------------
def make_sampler(seeds: list[int], temperature: float = 1.0, top_p: float = 1.0, banned: list[int] = (), vocab_limit: int | None = None):
    """A logits processor that samples every row with its own generator (Gumbel-max over the
    temperature- and nucleus-scaled distribution, ``banned`` ids and ids from ``vocab_limit`` on
    excluded) and returns a one-hot mask, so greedy decoding takes the sample. ``.logprobs``
    collects, per step, each row's sampled-token log-probability under the unscaled
    distribution it was handed."""
    return _generation_classes()[0](seeds, temperature, top_p, list(banned), vocab_limit)


def make_stopper(ids: list[int], device):
    """A stopping criterion: a row is done once its last token is one of ``ids``."""
    return _generation_classes()[1](ids, device)


@cache
def _generation_classes():
    """Defined on first use, so importing this module never imports torch or transformers."""
    import torch
    from transformers import LogitsProcessor, StoppingCriteria

    class GumbelSampler(LogitsProcessor):
        def __init__(self, seeds, temperature, top_p, banned, vocab_limit):
            self.generators = [torch.Generator().manual_seed(s) for s in seeds]
            self.temperature = temperature
            self.top_p = top_p
            self.banned = banned
            self.vocab_limit = vocab_limit
            self.logprobs: list = []

        def __call__(self, input_ids, scores):
            logp = torch.log_softmax(scores.float(), dim=-1)
            z = logp / self.temperature
            if self.banned:
                z[:, self.banned] = float("-inf")
            if self.vocab_limit is not None and self.vocab_limit < z.shape[-1]:
                z[:, self.vocab_limit :] = float("-inf")  # embedding rows with no token behind them
            if self.top_p < 1.0:
                probs, order = torch.softmax(z, dim=-1).sort(dim=-1, descending=True)
                outside = (probs.cumsum(dim=-1) - probs) > self.top_p  # the most likely token always stays
                z = z.masked_fill(torch.zeros_like(outside).scatter(1, order, outside), float("-inf"))
            vocab = scores.shape[-1]
            noise = torch.stack([torch.empty(vocab).exponential_(generator=g) for g in self.generators])
            choice = (z - noise.clamp_min(1e-30).log().to(z.device)).argmax(dim=-1)  # argmax(z + Gumbel)
            self.logprobs.append(logp.gather(1, choice[:, None]).squeeze(1).cpu())
            return torch.full_like(scores, float("-inf")).scatter(1, choice[:, None], 0.0)

    class TokenStop(StoppingCriteria):
        def __init__(self, ids, device):
            self.ids = torch.tensor(ids, device=device)

        def __call__(self, input_ids, scores, **kwargs):
            return torch.isin(input_ids[:, -1], self.ids)

    return GumbelSampler, TokenStop


def cat_mm(parts: list[dict]) -> dict:
    """Stack per-record multimodal inputs into rows (one part per row, parts may repeat)."""
    import torch

    out = {}
    for key in parts[0]:
        values = [p[key] for p in parts]
        if isinstance(values[0], torch.Tensor):
            if values[0].dim() >= 5 and len({v.shape[1] for v in values}) > 1:  # LLaVA-NeXT: patch counts differ
                width = max(v.shape[1] for v in values)
                values = [torch.cat([v, v.new_zeros((v.shape[0], width - v.shape[1], *v.shape[2:]))], dim=1) for v in values]
            out[key] = torch.cat(values, dim=0)
        else:
            out[key] = [x for v in values for x in v]
    return out


# -- CLIP ----------------------------------------------------------------------------------
_CLIP_SCORERS: dict = {}


class ClipScorer:
    """``100 * cos(image, text)`` with a ``transformers`` CLIPModel, loaded once on first use."""

    def __init__(self, path: str, device, batch_size: int = 64):
        self.path = path
        self.device = device
        self.batch_size = batch_size

    @cached_property
    def loaded(self):
        import torch
        from transformers import CLIPModel, CLIPProcessor

        try:
            model = CLIPModel.from_pretrained(self.path)
            processor = CLIPProcessor.from_pretrained(self.path)
        except OSError as exc:
            raise ConfigError(f"strategy.clip_model: could not load CLIP from {self.path}: {exc}") from None
        dtype = torch.float16 if str(self.device).startswith("cuda") else torch.float32
        model = model.to(device=self.device, dtype=dtype).eval()
        max_len = getattr(model.config.text_config, "max_position_embeddings", 77)
        return model, processor, max_len

    def image_features(self, images):
        """Unit image embeddings, one row per image."""
        import torch

        model, processor, _ = self.loaded
        pixels = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            feats = _embedding(model.get_image_features(pixel_values=pixels.to(model.device, model.dtype)))
        return torch.nn.functional.normalize(feats.float(), dim=-1).cpu()

    def text_features(self, texts: list[str]):
        import torch

        model, processor, max_len = self.loaded
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = processor.tokenizer(texts[start : start + self.batch_size], padding=True, truncation=True, max_length=max_len, return_tensors="pt")
            with torch.inference_mode():
                feats = _embedding(model.get_text_features(input_ids=batch["input_ids"].to(model.device), attention_mask=batch["attention_mask"].to(model.device)))
            out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.empty(0)

    def text_scores(self, texts: list[str], image_features: list) -> list[float]:
        """``100 * cos`` of each text with its record's images (mean over the record's images)."""
        if not texts:
            return []
        feats = self.text_features(texts)
        return [float(100.0 * (img @ t).mean()) for t, img in zip(feats, image_features, strict=True)]


def _embedding(output):
    """transformers 5 returns a model output whose pooler_output is the projected embedding."""
    return output if hasattr(output, "dim") else output.pooler_output


@hookimpl
def register_strategies(register):
    register(Csr)

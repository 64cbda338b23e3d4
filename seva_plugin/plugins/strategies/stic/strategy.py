"""Strategy ``stic``: Self-Training on Image Comprehension, stage 1 (arXiv 2405.19716).

For each image the model writes three things, all of its own (official ``stic/generate_pref.py``):

- **chosen**: its answer to the step-by-step description prompt (``DETAILED_PROMPT``) on the clean image;
- **rejected**, one of two kinds, drawn per record: with probability ``hallucination_share`` (0.5) its
  answer to a "hallucination" prompt (``HALLUCINATION_PROMPTS``) on the clean image, otherwise its answer
  to the pair's description prompt on a corrupted image (one of ``corruptions``, equally likely:
  ``low_resolution`` or ``color_jitter``);
- the pair is trained on a short description prompt (``DESCRIPTION_PROMPTS``), drawn per record
  (``Pair.prompt``), against the clean image.

Every draw comes from the record's seed, so a build gives the same pairs on any batch size, worker
count or resume. Answers are sampled at ``temperature`` 0.2 as the official script does (0: greedy).
``Pair.scores`` says which prompt and which view made each answer (a view's augmenter and keys are
``corruptions[view_id - 1]`` of the build config), so the gallery can show both.

Stage 2 (description-infused fine-tuning): a record whose ``meta`` holds an instruction
(``conversations``, from the ``images`` source) gets ``Pair.sft``: that instruction with the chosen
description infused into its first human turn, as the official ``stic/add_des_to_data.py`` does;
the ``llamafactory`` writer writes them as an SFT set with ``output.sft: true``. See
``docs/label-free.md`` and the STIC section of ``docs/paper-mapping.md`` for every difference from the
official code.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from seva_plugin import hookimpl
from seva_plugin.errors import ConfigError, show
from seva_plugin.interfaces import CLEAN, Augmenter, Backend, GenerationRequest, LoadedRecord, Pair, Sampling, Strategy, View, check_sampling
from seva_plugin.pipeline.records import IMAGE_TOKEN
from seva_plugin.pipeline.text import strip_eos
from seva_plugin.plugins.strategies.stic.prompts import DESCRIPTION_HEADER, DESCRIPTION_PROMPTS, DETAILED_PROMPT, HALLUCINATION_PROMPTS

HALLUCINATION, CORRUPTION = "hallucination_prompt", "corrupted_image"


def stic_seed(seed: int, what: str) -> int:
    digest = hashlib.sha256(f"stic:{what}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def asked(record: LoadedRecord, text: str) -> str:
    """The user turn for ``text``: the record's images first, each on its own line (the official ``<image>\\n`` layout)."""
    return (IMAGE_TOKEN + "\n") * len(record.images) + text


@dataclass(frozen=True)
class Plan:
    """A record's draws: the pair's prompt, and how its rejected answer is made."""

    pair_prompt: str
    negative: str  # HALLUCINATION or CORRUPTION
    rejected_prompt: str
    view: View


@dataclass
class Stic(Strategy):
    name = "stic"
    uses_augmenter = False  # its corruptions are its own (`corruptions`); the build's `augment` is recorded, never applied
    needs_question = False  # it asks its own prompts: a source of bare images serves it
    hallucination_share: float = 0.5  # rejected from a hallucination prompt, else from a corrupted image (official: random() > 0.5)
    corruptions: list[Any] = field(default_factory=lambda: ["low_resolution", "color_jitter"])  # augmenters, equally likely (official: 50/50)
    temperature: float = 0.2  # official --temperature 0.2 (sampled); 0: greedy
    top_p: float = 1.0  # official --top_p None
    max_new_tokens: int = 1024  # official --max_new_tokens 1024
    description_prompts: list[str] | None = None  # default: the official prompt_list
    hallucination_prompts: list[str] | None = None  # default: the official hallu_prompt_list
    detailed_prompt: str | None = None  # default: the official full_prompt

    def __post_init__(self) -> None:
        if not 0.0 <= self.hallucination_share <= 1.0:
            raise ConfigError(f"strategy.hallucination_share must be in [0, 1], got {show(self.hallucination_share)}.")
        check_sampling(self.temperature, self.top_p, "strategy")
        if self.max_new_tokens < 1:
            raise ConfigError(f"strategy.max_new_tokens must be at least 1, got {show(self.max_new_tokens)}.")
        self.descriptions = _texts(self.description_prompts, DESCRIPTION_PROMPTS, "description_prompts")
        self.hallucinations = _texts(self.hallucination_prompts, HALLUCINATION_PROMPTS, "hallucination_prompts")
        self.detailed = _texts([self.detailed_prompt] if self.detailed_prompt is not None else None, (DETAILED_PROMPT,), "detailed_prompt")[0]
        self.corruption_views = [View(k + 1, augmenter) for k, augmenter in enumerate(_augmenters(self.corruptions, self.hallucination_share < 1))]
        self.sampling = Sampling(self.temperature, self.top_p)

    # -- the draws ---------------------------------------------------------------------------
    def plan(self, record: LoadedRecord) -> Plan:
        """The record's draws, from its seed alone, in the official order: the pair's prompt, then the kind of negative."""
        rng = random.Random(stic_seed(record.seed, "plan"))
        pair_prompt = rng.choice(self.descriptions)
        if rng.random() < self.hallucination_share:
            return Plan(pair_prompt, HALLUCINATION, rng.choice(self.hallucinations), CLEAN)
        return Plan(pair_prompt, CORRUPTION, pair_prompt, self.corruption_views[rng.randrange(len(self.corruption_views))])

    def _request(self, record: LoadedRecord, text: str, view: View, side: str) -> GenerationRequest:
        return GenerationRequest(
            record, view, prompt=asked(record, text), max_new_tokens=self.max_new_tokens, sampling=self.sampling, seed=stic_seed(record.seed, side)
        )

    def planned_requests(self, records: Sequence[LoadedRecord], augmenter: Augmenter | None = None) -> list[GenerationRequest]:
        """Every record's chosen request (the detailed prompt, clean), then every record's rejected one."""
        plans = [self.plan(r) for r in records]
        chosen = [self._request(r, self.detailed, CLEAN, "chosen") for r in records]
        return chosen + [self._request(r, p.rejected_prompt, p.view, "rejected") for r, p in zip(records, plans, strict=True)]

    # -- the strategy hook -----------------------------------------------------------------
    def make_pairs(self, records: Sequence[LoadedRecord], backend: Backend, augmenter: Augmenter | None = None) -> list[Pair]:
        answers = backend.generate(self.planned_requests(records, augmenter))
        n = len(records)
        pairs = []
        for r, (chosen,), (rejected,) in zip(records, answers[:n], answers[n:], strict=True):
            plan = self.plan(r)
            view = plan.view
            scores = {
                "method": "stic",
                "chosen": {"prompt": self.detailed, "view_id": 0, "view": "clean"},
                "rejected": {"kind": plan.negative, "prompt": plan.rejected_prompt, "view_id": view.id, "view": _view_name(view)},
            }
            sft = infused(r, strip_eos(chosen.text))
            pairs.append(Pair(r.record, chosen.text, rejected.text, scores, prompt=asked(r, plan.pair_prompt), sft=sft))
        return pairs


def _view_name(view: View) -> str:
    return "clean" if view.augmenter is None else view.augmenter.name


def _texts(given: list[str] | None, default: tuple[str, ...], key: str) -> tuple[str, ...]:
    if given is None:
        return default
    if not isinstance(given, list) or not given or not all(isinstance(t, str) and t.strip() for t in given):
        raise ConfigError(f"strategy.{key} must be a non-empty list of non-empty strings, got {show(given)}.")
    if any(IMAGE_TOKEN in t for t in given):
        raise ConfigError(f"strategy.{key} must not hold {IMAGE_TOKEN} markers: the record's images are put in front of each prompt.")
    return tuple(given)


def _augmenters(specs: list[Any], needed: bool) -> list[Augmenter]:
    """The corruption augmenters, each a name or ``{name: ..., keys}``, built through the registry."""
    from seva_plugin.pipeline.config import split_spec
    from seva_plugin.registry import get_registry

    if not isinstance(specs, list) or (needed and not specs):
        raise ConfigError(f"strategy.corruptions must be a non-empty list of augmenters (names or {{name: ..., keys}}), got {show(specs)}.")
    out = []
    for k, spec in enumerate(specs):
        where = f"strategy.corruptions[{k}]"
        name, params = split_spec(spec, where)
        out.append(get_registry().get("augmenter", name).build(params, where))
    return out


def infused(record: LoadedRecord, description: str) -> list[dict[str, str]] | None:
    """The record's instruction (``meta["conversations"]``) with ``description`` infused into its first
    human turn (official ``add_des_to_data.py``), or ``None`` when it has none or its markers do not
    match its images."""
    turns = record.record.meta.get("conversations")
    if not turns or not description:
        return None
    value = turns[0]["value"]
    infusion = DESCRIPTION_HEADER + description + "\n\n"
    if IMAGE_TOKEN + "\n" in value:
        value = value.replace(IMAGE_TOKEN + "\n", IMAGE_TOKEN + "\n" + infusion)
    elif IMAGE_TOKEN in value:
        value = infusion + value
    else:  # LLaVA's layout: the image first (LLaMA-Factory needs one marker per image)
        value = (IMAGE_TOKEN + "\n") * len(record.images) + infusion + value
    conversation = [{"from": str(t.get("from")), "value": t["value"]} for t in turns]
    conversation[0]["value"] = value
    if sum(t["value"].count(IMAGE_TOKEN) for t in conversation) != len(record.images):
        return None
    return conversation


@hookimpl
def register_strategies(register: Any) -> None:
    register(Stic)

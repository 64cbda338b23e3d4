"""The records that flow through a build: prompts in, pairs out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from seva_plugin.errors import ConfigError

IMAGE_TOKEN = "<image>"


@dataclass
class PromptRecord:
    """One unlabeled prompt. ``prompt`` is the user turn in LLaMA-Factory form: it holds
    exactly one ``<image>`` marker per entry of ``images`` (absolute paths)."""

    id: str
    prompt: str
    images: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def question(self) -> str:
        return self.prompt.replace(IMAGE_TOKEN, "").strip()


@dataclass
class LoadedRecord:
    """A prompt with its decoded RGB images and the seed its randomness is drawn from."""

    record: PromptRecord
    images: list  # PIL.Image.Image, RGB
    seed: int

    @property
    def id(self) -> str:
        return self.record.id


@dataclass
class Pair:
    """A preference pair for one of the records a strategy was given. ``prompt`` is the user turn
    training sees (its writers write it): ``None`` takes the record's; another prompt must hold the
    record's image markers. ``scores`` are written with the pair (the same keys for every record).
    ``sft``: a supervised conversation the strategy offers beside the pair (sharegpt turns
    ``{"from": "human" | "gpt", "value"}``, its first human turn holding the record's image
    markers), written by a writer asked for an SFT set (``output.sft``)."""

    record: PromptRecord
    chosen: str
    rejected: str
    scores: dict[str, Any] = field(default_factory=dict)
    prompt: str | None = None
    sft: list[dict[str, str]] | None = None

    def __post_init__(self) -> None:
        if self.prompt is None:
            self.prompt = self.record.prompt
        elif self.prompt.count(IMAGE_TOKEN) != len(self.record.images):
            raise ConfigError(
                f"Pair.prompt must hold one {IMAGE_TOKEN} marker per image of record '{self.record.id}' ({len(self.record.images)}), "
                f"got {self.prompt.count(IMAGE_TOKEN)}."
            )
        if self.sft is not None:
            markers = sum(str(turn.get("value", "")).count(IMAGE_TOKEN) for turn in self.sft)
            if markers != len(self.record.images) or not self.sft or self.sft[0].get("from") != "human":
                raise ConfigError(
                    f"Pair.sft must start with a human turn and hold one {IMAGE_TOKEN} marker per image of record '{self.record.id}' "
                    f"({len(self.record.images)}), got {markers}."
                )

    def to_json(self) -> dict[str, Any]:
        r = self.record
        out: dict[str, Any] = {"id": r.id, "prompt": self.prompt, "images": r.images, "chosen": self.chosen, "rejected": self.rejected}
        if self.scores:
            out["scores"] = self.scores
        if r.meta:
            out["meta"] = r.meta
        if self.sft is not None:
            out["sft"] = self.sft
        return out


def with_image_markers(question: str, n_images: int) -> str:
    """Put ``n_images`` markers in front of a question that has none (LLaVA's layout)."""
    if IMAGE_TOKEN in question:
        return question
    return IMAGE_TOKEN * n_images + question


@dataclass
class Reject:
    """A record that cannot be used, with a reason a person understands."""

    id: str
    reason: str
    code: str = "invalid"  # short category, counted in the manifest


def has_lone_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (JSON's ``"\\ud800"``): not Unicode text, so no
    tokenizer takes it and no UTF-8 file holds it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def unusable_text(record: PromptRecord) -> Reject | None:
    """The text checks every record passes before any model sees it, whatever its source: a lone
    surrogate in its id, prompt or image paths, or a NUL character in its prompt, rejects it
    (code ``bad_text``) instead of crashing the tokenizer in every run, resumes included."""
    fields = [("id", record.id), ("prompt", record.prompt), *(("image path", p) for p in record.images)]
    for what, text in fields:
        if has_lone_surrogate(text):
            return Reject(record.id, f"the record's {what} is not valid Unicode text (it holds a lone surrogate such as \\ud800)", "bad_text")
    if "\0" in record.prompt:
        return Reject(record.id, "the prompt holds a NUL character (\\u0000)", "bad_text")
    return None

"""The records that flow through a build: prompts in, pairs out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
    inputs: dict | None = None  # what its answers depend on (intake.fingerprint), journaled to notice a changed source on resume

    @property
    def id(self) -> str:
        return self.record.id


@dataclass
class Pair:
    record: PromptRecord
    chosen: str
    rejected: str
    scores: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        r = self.record
        out = {"id": r.id, "prompt": r.prompt, "images": r.images, "chosen": self.chosen, "rejected": self.rejected}
        if self.scores:
            out["scores"] = self.scores
        if r.meta:
            out["meta"] = r.meta
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
    inputs: dict | None = None  # the record's text fingerprint, when it had a prompt (intake.fingerprint)


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

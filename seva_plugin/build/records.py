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

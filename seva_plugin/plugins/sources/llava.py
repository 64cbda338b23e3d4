"""Source ``llava``: LLaVA-1.5 instruction JSON (``llava_v1_5_mix665k.json``).

Without a preset every record gives one prompt: its first human turn. ``preset: seva``
reproduces the official SeVa prompt selection (Kevinz-code/SeVa's data scripts), seeded:
OCR-VQA images with up to two questions each, made open-ended, plus TextCaps caption prompts.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

from seva_plugin import hookimpl
from seva_plugin.errors import ConfigError, show
from seva_plugin.interfaces import Source
from seva_plugin.pipeline.records import IMAGE_TOKEN, Reject
from seva_plugin.plugins.sources.common import Malformed, guarded, iter_json_rows, make_record, record_id, reject_id, text_field

OCR_SUFFIX = "Answer the question using a single word or phrase."


def human_turns(row: dict) -> list[str]:
    """The text of each human turn; a ``conversations`` that is not a list of turn objects is :class:`Malformed`."""
    turns = row.get("conversations")
    if turns is None:
        return []
    if not isinstance(turns, list):
        raise Malformed(f"conversations must be a list of turns, got {show(turns)}")
    out = []
    for k, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise Malformed(f"conversations[{k}] must be an object with 'from' and 'value', got {show(turn)}")
        if text_field(turn, "from", f"conversations[{k}].from") == "human":
            out.append(text_field(turn, "value", f"conversations[{k}].value") or "")
    return out


def open_ended(question: str) -> str:
    """OCR-VQA: drop the marker, the short-answer suffix and every newline (as the official code)."""
    return question.replace(IMAGE_TOKEN, "").replace(OCR_SUFFIX, "").replace("\n", "")


@dataclass
class LlavaSource(Source):
    name = "llava"
    file: str
    image_dir: str | None = None  # the folder the "image" paths are relative to
    preset: str | None = None  # None or "seva"
    seed: int = 0  # sampling seed for the preset (the official sampling was unseeded)
    ocr_vqa_images: int = 4000
    ocr_vqa_questions: int = 2
    textcaps_images: int = 8000

    def __post_init__(self):
        if self.preset not in (None, "seva"):
            raise ConfigError(f"source.preset must be 'seva' or absent, got {show(self.preset)}.")

    def iter_records(self):
        base = self.image_dir or os.path.dirname(os.path.abspath(self.file))
        if self.preset == "seva":
            yield from self._seva(base)
            return
        for index, row in iter_json_rows(self.file):
            if isinstance(row, Reject):
                yield row
                continue
            yield guarded(reject_id(row.get("id"), f"row-{index}"), self._first_turn, row, index, base)

    @staticmethod
    def _first_turn(row: dict, index: int, base: str):
        turns = human_turns(row)
        return make_record(record_id(row.get("id"), f"row-{index}"), turns[0] if turns else None, row.get("image"), base)

    def _seva(self, base: str):
        ocr: list[tuple[int, dict[str, Any]]] = []
        textcaps: list[tuple[int, dict[str, Any]]] = []
        for index, row in iter_json_rows(self.file):
            if not isinstance(row, dict):
                continue
            image = row.get("image")
            if isinstance(image, str) and image.startswith("ocr_vqa"):
                ocr.append((index, row))
            elif isinstance(image, str) and image.startswith("textvqa"):
                textcaps.append((index, row))
        rng = random.Random(self.seed)
        ocr = rng.sample(ocr, min(self.ocr_vqa_images, len(ocr)))
        textcaps = rng.sample(textcaps, min(self.textcaps_images, len(textcaps)))
        for index, row in ocr:
            yield from self._ocr_questions(row, index, base)
        for index, row in textcaps:
            yield guarded(reject_id(row.get("id"), f"row-{index}"), self._caption, row, index, base)

    def _ocr_questions(self, row: dict, index: int, base: str):
        rid = reject_id(row.get("id"), f"row-{index}")
        try:
            rid = record_id(row.get("id"), rid)
            questions = human_turns(row)[: self.ocr_vqa_questions]
        except Malformed as exc:
            yield Reject(rid, str(exc), "malformed")
            return
        for k, question in enumerate(questions):
            meta = {"subset": "ocr_vqa", "source_id": rid}
            yield make_record(f"{rid}-q{k}", open_ended(question), row["image"], base, meta)

    @staticmethod
    def _caption(row: dict, index: int, base: str):
        rid = record_id(row.get("id"), f"row-{index}")
        turns = human_turns(row)
        question = turns[0].replace(IMAGE_TOKEN + "\n", "").replace(IMAGE_TOKEN, "") if turns else None
        return make_record(rid, question, row["image"], base, {"subset": "textcaps", "source_id": rid})


@hookimpl
def register_sources(register):
    register(LlavaSource)

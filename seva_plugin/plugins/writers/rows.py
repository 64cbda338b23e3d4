"""Pairs as table rows, both ways, for the two Parquet layouts.

A *pair* is what every writer takes: ``{"id", "prompt", "chosen", "rejected", "images",
"provenance", "scores"?, "meta"?}``, with ``prompt`` holding one ``<image>`` marker per image and
each image a file path or an embedded ``{"bytes", "path"}`` value.

- ``sharegpt``: LLaMA-Factory's ranking layout, with the features of the Hub's preference sets
  (``llamafactory/RLHF-V``): ``conversations``, ``chosen``, ``rejected`` and ``images`` as
  ``Sequence(Image())``. Sets with the same features mix in one LLaMA-Factory run.
- ``trl``: TRL's conversational preference layout for vision: ``prompt``/``chosen``/``rejected`` are
  message lists whose ``content`` is a list of ``{"type": "image"}`` and ``{"type": "text", "text"}``
  items, and ``images`` holds the images in the order of the image items.

``provenance``, ``scores`` and ``meta`` are JSON strings: their keys vary by strategy and source,
and a Parquet schema is fixed before the first row is written.
"""

from __future__ import annotations

import json
from functools import cache
from typing import TYPE_CHECKING, Any

from seva_plugin.pipeline.records import IMAGE_TOKEN

if TYPE_CHECKING:
    from datasets import Features

EXTRA_COLUMNS = ("provenance", "scores", "meta")


# Features are built on first use: importing ``datasets`` takes seconds, and every command loads the writers.
@cache
def sharegpt_features() -> Features:
    from datasets import Features, Image, List, Value

    turn = {"from": Value("string"), "value": Value("string")}
    extras = {"id": Value("string"), **{key: Value("string") for key in EXTRA_COLUMNS}}
    return Features({"conversations": List(turn), "chosen": turn, "rejected": turn, "images": List(Image()), **extras})


@cache
def trl_features() -> Features:
    from datasets import Features, Image, List, Value

    messages = List({"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})})
    extras = {"id": Value("string"), **{key: Value("string") for key in EXTRA_COLUMNS}}
    return Features({"prompt": messages, "chosen": messages, "rejected": messages, "images": List(Image()), **extras})


def _extras(pair: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": str(pair["id"])}
    for key in EXTRA_COLUMNS:
        value = pair.get(key)
        out[key] = json.dumps(value, ensure_ascii=False, sort_keys=True) if value else None
    return out


def _extras_back(row: dict[str, Any]) -> dict[str, Any]:
    """The id and extras of a row; Parquet stores the extras as JSON strings, JSONL as objects."""
    out = {"id": str(row["id"])}
    for key in EXTRA_COLUMNS:
        value = row.get(key)
        if value:
            out[key] = json.loads(value) if isinstance(value, str) else value
    return out


# -- sharegpt (LLaMA-Factory) --------------------------------------------------------------
def sharegpt_row(pair: dict[str, Any], images: list[Any]) -> dict[str, Any]:
    return {
        "conversations": [{"from": "human", "value": pair["prompt"]}],
        "chosen": {"from": "gpt", "value": pair["chosen"]},
        "rejected": {"from": "gpt", "value": pair["rejected"]},
        "images": images,
        **_extras(pair),
    }


def pair_from_sharegpt(row: dict[str, Any]) -> dict[str, Any]:
    """The pair behind a sharegpt row (a JSONL record or a Parquet row); ``images`` as stored."""
    turns = row["conversations"]
    if not (isinstance(turns, list) and len(turns) == 1 and isinstance(turns[0], dict)):
        raise ValueError(f"'conversations' must hold exactly one human turn, got {turns!r:.200}")
    return {
        **_extras_back(row),
        "prompt": turns[0]["value"],
        "chosen": row["chosen"]["value"],
        "rejected": row["rejected"]["value"],
        "images": list(row.get("images") or []),
    }


# -- TRL -----------------------------------------------------------------------------------
def _content(prompt: str) -> list[dict[str, Any]]:
    """``"<image>What is this?"`` -> ``[{"type": "image"}, {"type": "text", "text": "What is this?"}]``.
    Texts are kept exactly (whitespace included) so that the prompt comes back unchanged."""
    items: list[dict[str, Any]] = []
    for k, text in enumerate(prompt.split(IMAGE_TOKEN)):
        if k:
            items.append({"type": "image", "text": None})
        if text:
            items.append({"type": "text", "text": text})
    return items


def _answer(text: str) -> list[dict[str, Any]]:
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


def trl_row(pair: dict[str, Any], images: list[Any]) -> dict[str, Any]:
    return {
        "prompt": [{"role": "user", "content": _content(pair["prompt"])}],
        "chosen": _answer(pair["chosen"]),
        "rejected": _answer(pair["rejected"]),
        "images": images,
        **_extras(pair),
    }


def _text(messages: list[dict[str, Any]], role: str) -> str:
    if not (isinstance(messages, list) and len(messages) == 1 and messages[0].get("role") == role):
        raise ValueError(f"expected one {role} message, got {messages!r:.200}")
    return "".join(IMAGE_TOKEN if item["type"] == "image" else item["text"] or "" for item in messages[0]["content"])


def pair_from_trl(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **_extras_back(row),
        "prompt": _text(row["prompt"], "user"),
        "chosen": _text(row["chosen"], "assistant"),
        "rejected": _text(row["rejected"], "assistant"),
        "images": list(row.get("images") or []),
    }

"""Shared helpers for source plugins: reading JSON/JSONL robustly and making prompt records."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

from seva_plugin.errors import ConfigError, show
from seva_plugin.pipeline.records import IMAGE_TOKEN, PromptRecord, Reject, with_image_markers


def iter_json_rows(path: str) -> Iterator[tuple[int, dict[str, Any] | Reject]]:
    """Yield ``(index, row)`` from a JSON list or JSONL file. A JSONL line that is not valid
    UTF-8 JSON object comes out as a Reject naming the line, and reading goes on."""
    if not os.path.isfile(path):
        raise ConfigError(f"source file not found: {path}")
    if path.endswith(".jsonl"):
        with open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    yield lineno, Reject(f"line-{lineno}", f"{os.path.basename(path)} line {lineno} is not valid UTF-8", "bad_json")
                    continue
                except json.JSONDecodeError as exc:
                    yield lineno, Reject(f"line-{lineno}", f"{os.path.basename(path)} line {lineno} is not valid JSON ({exc.msg})", "bad_json")
                    continue
                if not isinstance(row, dict):
                    yield lineno, Reject(f"line-{lineno}", f"{os.path.basename(path)} line {lineno} is not a JSON object", "bad_json")
                    continue
                yield lineno, row
        return
    with open(path, encoding="utf-8") as fh:
        try:
            rows = json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} is not a valid JSON file: {exc}") from None
    if not isinstance(rows, list):
        raise ConfigError(f"{path} must hold a JSON list of records.")
    for index, row in enumerate(rows):
        yield index, row if isinstance(row, dict) else Reject(f"row-{index}", f"row {index} is not a JSON object", "bad_json")


def resolve(path: str, base: str | None) -> str:
    """Join a relative image path to ``base`` (LLaMA-Factory's media_dir rule) and make it absolute."""
    if base and not os.path.isabs(path):
        joined = os.path.join(base, path)
        if os.path.isfile(joined) or not os.path.exists(path):
            path = joined
    return os.path.abspath(path)


class Malformed(ValueError):
    """A row whose structure is not its format's (a value of the wrong type): the row becomes a reject
    with code ``malformed`` and this message as its reason."""


def guarded(fallback_id: str, parse: Callable[..., PromptRecord | Reject], *args) -> PromptRecord | Reject:
    """``parse(*args)``, with a malformed row turned into a reject named ``fallback_id`` instead of an
    exception that would stop the build. Sources check the types they read (:class:`Malformed`); the
    other exceptions are the net for a shape no check foresaw."""
    try:
        return parse(*args)
    except Malformed as exc:
        return Reject(fallback_id, str(exc), "malformed")
    except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
        return Reject(fallback_id, f"malformed row ({type(exc).__name__}: {exc})", "malformed")


def _usable_id(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def reject_id(value: Any, fallback: str) -> str:
    """The id a row's reject carries: its own id when usable (a string or an integer), else ``fallback``."""
    return str(value) if _usable_id(value) else fallback


def record_id(value: Any, fallback: str) -> str:
    """A row's id as text: a string or an integer as given, ``fallback`` when absent."""
    if value is None:
        return fallback
    if not _usable_id(value):
        raise Malformed(f"id must be a string or an integer, got {show(value)}")
    return str(value)


def text_field(row: dict, key: str, where: str = "") -> str | None:
    """``row[key]`` when it is a string, None when absent or null; any other type is malformed."""
    value = row.get(key)
    if value is None or isinstance(value, str):
        return value
    raise Malformed(f"{where or key} must be a string, got {show(value)}")


def make_record(record_id: Any, question: Any, images: Any, base: str | None, meta: dict | None = None) -> PromptRecord | Reject:
    """Validate the parts every source shares and return a PromptRecord, or a Reject saying why not."""
    record_id = str(record_id)
    if images is None or images == [] or images == "":
        return Reject(record_id, "record has no image", "no_image")
    images = images if isinstance(images, list) else [images]
    if not all(isinstance(p, str) and p for p in images):
        return Reject(record_id, f"image entries must be non-empty path strings, got {show(images)}", "no_image")
    if question is not None and not isinstance(question, str):
        return Reject(record_id, f"the question must be a string, got {show(question)}", "malformed")
    if question is None or not question.replace(IMAGE_TOKEN, "").strip():
        return Reject(record_id, "empty question", "empty_question")
    prompt = with_image_markers(question, len(images))
    if prompt.count(IMAGE_TOKEN) != len(images):
        return Reject(record_id, f"{prompt.count(IMAGE_TOKEN)} <image> marker(s) in the question but {len(images)} image(s)", "image_count_mismatch")
    return PromptRecord(record_id, prompt, [resolve(p, base) for p in images], meta or {})

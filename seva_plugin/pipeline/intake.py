"""Record intake: a source's records become batches of decoded records, or rejects with a reason.

One rule for the driver and for Ray workers (which decode their batches' images themselves):
:func:`load` turns a prompt into a :class:`LoadedRecord` or a :class:`Reject`, never an exception.

Each record's inputs are fingerprinted (:func:`fingerprint`: its prompt and image paths, and each
image file's size, modification time and sha256) and journaled with its result, so a resume that
finds a finished record's inputs changed (:func:`stale`) refuses, naming it, rather than keep answers
about the old ones. A file whose size and time are unchanged is not read again: a resume stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Generator, Iterator
from dataclasses import replace

from seva_plugin.errors import ConfigError, RecordError, show
from seva_plugin.pipeline.files import sha256_file
from seva_plugin.pipeline.images import load_rgb
from seva_plugin.pipeline.records import LoadedRecord, PromptRecord, Reject, unusable_text
from seva_plugin.pipeline.views import record_seed

SHOWN = 10  # changed records a refusal names


def text_digest(record: PromptRecord) -> str:
    return hashlib.sha256(json.dumps([record.prompt, record.images]).encode("ascii")).hexdigest()[:16]


def file_stamp(path: str) -> list:
    """``[size, modification time (ns), sha256 prefix]`` of a file."""
    info = os.stat(path)
    return [info.st_size, info.st_mtime_ns, sha256_file(path)[:16]]


def fingerprint(record: PromptRecord, with_images: bool) -> dict:
    """What a record's result depends on: its text, and (for a record that was answered) its image files."""
    inputs: dict = {"text": text_digest(record)}
    if with_images:
        inputs["images"] = [file_stamp(p) for p in record.images]
    return inputs


def changed(record: PromptRecord, recorded: dict | None) -> str | None:
    """How ``record``'s inputs differ from those journaled with its result; None when they do not (or were not journaled)."""
    if not recorded:
        return None
    if recorded.get("text") != text_digest(record):
        return "its prompt or image paths"
    for path, (size, mtime, digest) in zip(record.images, recorded.get("images") or [], strict=False):
        try:
            info = os.stat(path)
            if (info.st_size, info.st_mtime_ns) != (size, mtime) and sha256_file(path)[:16] != digest:
                return f"image {path} changed"
        except OSError:
            return f"image {path} is gone"
    return None


def load(record: PromptRecord, seed: int) -> LoadedRecord | Reject:
    """``record`` with its images decoded, or the reason it cannot be used (one record never stops a build)."""
    try:
        images = [load_rgb(p) for p in record.images]
        return LoadedRecord(record, images, seed, fingerprint(record, with_images=True))
    except RecordError as exc:
        return Reject(record.id, str(exc), exc.code, fingerprint(record, with_images=False))
    except Exception as exc:  # noqa: BLE001 - one record must not stop the build
        reason = f"could not be prepared: {type(exc).__name__}: {show(str(exc), 300)[1:-1]}"
        return Reject(record.id, reason, "prepare_error", fingerprint(record, with_images=False))


def stale(records: Iterator[PromptRecord | Reject], done: Counter[str], recorded: dict[str, list], limit: int | None = None) -> list[tuple[str, str]]:
    """``(id, what changed)`` for each finished record (``done``) whose inputs are no longer those journaled
    with its result (``recorded``). Reads the source until every finished record is met (or its end)."""
    left = sum(done.values())
    seen: Counter[str] = Counter()
    out: list[tuple[str, str]] = []
    try:
        for n, item in enumerate(records):
            if left == 0 or (limit is not None and n >= limit):
                break
            seen[item.id] += 1
            if seen[item.id] > done[item.id]:
                continue
            left -= 1
            previous = recorded.get(item.id, [])[seen[item.id] - 1 : seen[item.id]]
            why = changed(item, previous[0]) if previous and isinstance(item, PromptRecord) else None
            if why:
                out.append((item.id, why))
    finally:
        if isinstance(records, Generator):
            records.close()
    return out


def batches(
    records: Iterator[PromptRecord | Reject],
    build_seed: int,
    batch_size: int,
    done: Counter[str],
    limit: int | None = None,
    seen: Counter[str] | None = None,
) -> Iterator[tuple[list[LoadedRecord], list[Reject]]]:
    """``(records, rejects)`` batches of at most ``batch_size`` decoded records, in source order.

    The first ``limit`` source records are read; ``done[id]`` occurrences of an id were finished
    before a resume and are skipped. ``seen`` counts the occurrences of each id read (the records of
    this build). A duplicate id, a record whose text no model can take and a record whose images
    cannot be decoded are rejects.
    """
    seen = Counter() if seen is None else seen
    batch: list[LoadedRecord] = []
    rejects: list[Reject] = []
    try:
        for n, item in enumerate(records):
            if limit is not None and n >= limit:
                break
            seen[item.id] += 1
            if seen[item.id] <= done[item.id]:
                continue  # finished before a resume
            if isinstance(item, Reject):
                rejects.append(item)
                continue
            if seen[item.id] > 1:
                why = f"duplicate id '{show(item.id, 60)[1:-1]}' (occurrence {seen[item.id]}); the first one was used"
                rejects.append(Reject(item.id, why, "duplicate_id", fingerprint(item, with_images=False)))
                continue
            bad = unusable_text(item)
            loaded = replace(bad, inputs=fingerprint(item, with_images=False)) if bad else load(item, record_seed(build_seed, item.id))
            if isinstance(loaded, Reject):
                rejects.append(loaded)
                continue
            batch.append(loaded)
            if len(batch) == batch_size:
                yield batch, rejects
                batch, rejects = [], []
        if batch or rejects:
            yield batch, rejects
    finally:
        if isinstance(records, Generator):  # a source's open file is closed now, not at garbage collection
            records.close()


def source_changed(stale: list[tuple[str, str]]) -> ConfigError:
    named = ", ".join(f"{show(rid, 60)[1:-1]} ({why})" for rid, why in stale[:SHOWN])
    more = f" and {len(stale) - SHOWN} more" if len(stale) > SHOWN else ""
    return ConfigError(
        f"the source changed since the journal's finished records were built: {named}{more}. Resuming would keep answers about the old "
        "inputs beside data from the new ones. Restore them, or set output.overwrite=true to build the dataset again."
    )

"""Record intake: a source's records become batches of decoded records, or rejects with a reason.

One rule for the driver and for Ray workers (which decode their batches' images themselves):
:func:`load` turns a prompt into a :class:`LoadedRecord` or a :class:`Reject`, never an exception.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator, Iterator

from seva_plugin.errors import RecordError, show
from seva_plugin.pipeline.images import load_rgb
from seva_plugin.pipeline.records import LoadedRecord, PromptRecord, Reject, unusable_text
from seva_plugin.pipeline.views import record_seed


def load(record: PromptRecord, seed: int) -> LoadedRecord | Reject:
    """``record`` with its images decoded, or the reason it cannot be used (one record never stops a build)."""
    try:
        return LoadedRecord(record, [load_rgb(p) for p in record.images], seed)
    except RecordError as exc:
        return Reject(record.id, str(exc), exc.code)
    except Exception as exc:  # noqa: BLE001 - one record must not stop the build
        return Reject(record.id, f"could not be prepared: {type(exc).__name__}: {show(str(exc), 300)[1:-1]}", "prepare_error")


def batches(
    records: Iterator[PromptRecord | Reject], build_seed: int, batch_size: int, done: Counter[str], limit: int | None = None
) -> Iterator[tuple[list[LoadedRecord], list[Reject]]]:
    """``(records, rejects)`` batches of at most ``batch_size`` decoded records, in source order.

    The first ``limit`` source records are read; ``done[id]`` occurrences of an id were finished
    before a resume and are skipped. A duplicate id, a record whose text no model can take and a
    record whose images cannot be decoded are rejects.
    """
    seen: Counter[str] = Counter()
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
                rejects.append(
                    Reject(item.id, f"duplicate id '{show(item.id, 60)[1:-1]}' (occurrence {seen[item.id]}); the first one was used", "duplicate_id")
                )
                continue
            loaded = unusable_text(item) or load(item, record_seed(build_seed, item.id))
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

"""What every backend shares: request runs by view, and the inputs kept from the prefetch thread."""

from __future__ import annotations

import threading

from seva_plugin.interfaces import CLEAN, GenerationRequest, View
from seva_plugin.pipeline.records import LoadedRecord, PromptRecord
from seva_plugin.plugins.augmenters.diffusion_noise import DiffusionNoise
from seva_plugin.plugins.backends.batching import PreparedInputs, runs_by_view


def records(n: int) -> list[LoadedRecord]:
    return [LoadedRecord(PromptRecord(id=f"r{i}", prompt="Describe the image.", images=[]), [], i) for i in range(n)]


def test_runs_by_view_keeps_order_and_groups_neighbours():
    a, b = records(2)
    noised = View(1, DiffusionNoise(step=500))
    requests = [GenerationRequest(a), GenerationRequest(b), GenerationRequest(a, noised), GenerationRequest(b)]
    assert [[(r.record.id, r.view.id) for r in run] for run in runs_by_view(requests)] == [
        [("r0", 0), ("r1", 0)],
        [("r0", 1)],
        [("r1", 0)],
    ]


def test_prepared_inputs_are_found_once_for_the_same_requests():
    recs = records(2)
    store = PreparedInputs()
    same = [GenerationRequest(r) for r in recs]
    store.put(same, "inputs")
    assert store.take([GenerationRequest(r, prefix="A") for r in recs]) is None  # another prefix: other inputs
    assert store.take([GenerationRequest(r, CLEAN, n=2) for r in recs]) is None  # another count
    assert store.take([GenerationRequest(r) for r in recs]) == "inputs"  # equal requests, same record objects
    assert store.take(same) is None  # taken once


def test_prepared_inputs_are_bounded_and_thread_safe():
    store = PreparedInputs(keep=4)
    batches = [[GenerationRequest(r)] for r in records(64)]
    threads = [threading.Thread(target=lambda b=b, i=i: store.put(b, i)) for i, b in enumerate(batches)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kept = [i for i, b in enumerate(batches) if store.take(b) is not None]
    assert len(kept) == 4  # what a strategy never asks for does not pile up


def test_prepared_inputs_hold_their_records_and_tell_prompts_apart():
    """Entries were keyed on id() of records they let go: a new record at the same address found stale
    inputs. Now an entry holds its records (compared by identity) and keys on prompt and system too."""
    import gc
    import weakref

    store = PreparedInputs()
    (record,) = records(1)
    alive = weakref.ref(record)
    store.put([GenerationRequest(record)], "inputs")
    twin = LoadedRecord(record.record, record.images, record.seed)  # equal, but another object
    assert store.take([GenerationRequest(twin)]) is None
    assert store.take([GenerationRequest(record, prompt="Another question?")]) is None
    assert store.take([GenerationRequest(record, system="Be brief.")]) is None
    del record, twin
    gc.collect()
    assert alive() is not None  # kept alive by the entry: its id cannot be reused while the entry exists
    assert store.take([GenerationRequest(alive())]) == "inputs"

"""Where a build's batches run: in this process (:class:`LocalWorkers`), or on Ray workers
(``ray_workers.RayWorkers``, with ``ray.num_workers > 1``). Both hand back journal entries in
source order and describe themselves for the manifest with the same throughput figures."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Iterator
from typing import Any

from seva_plugin.errors import ConfigError, SevaError
from seva_plugin.pipeline.batch import BatchWork, WorkSpec
from seva_plugin.pipeline.records import LoadedRecord, Reject


class WorkersLost(SevaError):
    """Every worker died, or a batch failed on more workers than restarts allow."""


class LocalWorkers:
    """A build in this process: the batches run here, in order, one at a time."""

    local = True

    def __init__(self, work: BatchWork):
        self.work = work
        self.stats = new_stats()

    def start(self) -> None:
        pass

    def map(self, items: Iterable[tuple[list[LoadedRecord], list[Reject]]]) -> Iterator[tuple[list[Reject], list[dict]]]:
        for batch, rejects in items:
            started, cpu = time.perf_counter(), time.process_time()
            entries = self.work.process(batch)
            if batch:
                add_batch(self.stats, len(batch), time.perf_counter() - started, time.process_time() - cpu)
            yield rejects, entries

    def describe(self) -> dict[str, Any]:
        return {"ray": False, "num_workers": 1, "workers": [{"index": 0, "node": socket.gethostname(), "pid": os.getpid(), **throughput(self.stats)}]}

    def close(self) -> None:
        pass  # the build closes its backend itself


def new_stats() -> dict:
    return {"batches": 0, "records": 0, "busy": 0.0, "cpu": 0.0, "first": 0.0, "first_records": 0}


def add_batch(stats: dict, records: int, seconds: float, cpu: float) -> None:
    if stats["batches"] == 0:  # the first batch loads the model
        stats["first"], stats["first_records"] = seconds, records
    stats["batches"] += 1
    stats["records"] += records
    stats["busy"] += seconds
    stats["cpu"] += cpu


def throughput(stats: dict) -> dict:
    """Batches, records and seconds spent on them (``cpu_seconds``: the CPU time of the process meanwhile,
    all its threads; far below ``busy_seconds`` on a CPU means the worker waited for a core);
    ``records_per_second`` leaves out the first batch (it loads the model) when there are others."""
    records, busy = stats["records"], stats["busy"]
    if stats["batches"] > 1:
        records, busy = records - stats["first_records"], busy - stats["first"]
    return {
        "batches": stats["batches"],
        "records": stats["records"],
        "busy_seconds": round(stats["busy"], 2),
        "cpu_seconds": round(stats["cpu"], 2),
        "first_batch_seconds": round(stats["first"], 2),
        "records_per_second": round(records / busy, 3) if busy > 0 else None,
    }


def reject_entry(reject: Reject) -> dict:
    """The journal entry of a record that could not be used."""
    return {"kind": "reject", "id": reject.id, "reason": reject.reason, "code": reject.code, "inputs": reject.inputs}


def make_workers(spec: WorkSpec, work: BatchWork, settings: dict[str, Any] | None):
    """In this process for ``num_workers: 1`` (Ray is never imported), else on Ray."""
    from seva_plugin.pipeline.ray_settings import ray_settings, uses_ray
    from seva_plugin.pipeline.ray_workers import RayWorkers

    settings = ray_settings(settings)  # a BuildConfig made without load_config: checked here too
    if not uses_ray(settings):
        return LocalWorkers(work)
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ConfigError(f"ray.num_workers={settings['num_workers']} needs Ray: pip install 'seva-plugin[ray]' (ray 2.60.0).") from None
    return RayWorkers(spec, settings)

"""Running a build's batches on Ray workers: the driver side.

With ``ray.num_workers > 1`` the build (``pipeline.build.Build``) keeps everything that decides what is
written: the source, the image checks, the journal, the writer, the manifest. Each Ray actor
(:class:`_Worker`) holds one backend replica and runs :class:`~seva_plugin.pipeline.batch.BatchWork`
(strategy, filters) on the batches it is sent, the same code a one-process build runs.

- **Same bytes.** A batch is the one a one-process build would form, and its pairs depend only on
  its records (seeded by id). Results come back in any order and are handed to the journal in
  source order, so the journal, the data and the rejects are those of a one-process build.
- **Bounded.** At most ``batches_per_worker`` batches are queued on a worker, and at most
  ``num_workers * (batches_per_worker + 1)`` are sent but not yet journaled; what travels is each
  record's prompt, image paths and seed (the worker decodes the images itself).
- **Faults.** A worker that dies is restarted by Ray (``max_restarts``) and its unfinished batches
  are retried on it (``max_task_retries``); a worker that stays dead has its batches sent to the
  others. Only the driver writes, so nothing is journaled twice. An exception for one record
  becomes that record's reject inside the worker (``batch.bisect``).
- **Clean exit.** Actors are killed when the build ends; a Ray this build started is shut down; a
  cluster it joined (``address``) or a Ray this process was already connected to is left running.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from seva_plugin.errors import ConfigError, SevaError
from seva_plugin.pipeline.batch import WorkSpec
from seva_plugin.pipeline.intake import load
from seva_plugin.pipeline.ray_settings import actor_options, tensor_parallel
from seva_plugin.pipeline.records import LoadedRecord, PromptRecord, Reject
from seva_plugin.pipeline.workers import WorkersLost, add_batch, new_stats, reject_entry, throughput

START_TIMEOUT_S = 600  # workers must be placed and constructed within this (a cluster short of resources fails here)


# -- the worker (a Ray actor) ------------------------------------------------------------------
class _Worker:
    """One backend replica. Constructed in its own process by Ray (and again after a restart)."""

    def __init__(self, spec: WorkSpec, threads: int | None, cwd: str):
        if os.path.isdir(cwd):  # relative paths in the config (model, adapter, clip_model) mean what they mean to the driver
            os.chdir(cwd)
        if threads:
            # a CPU worker gets as many torch threads as CPUs it was given, not one per core of the node
            os.environ["OMP_NUM_THREADS"] = str(threads)
            import torch

            torch.set_num_threads(threads)
        self.work = spec.build()
        self.started = time.time()

    def ready(self) -> dict:
        import ray

        ids = ray.get_runtime_context().get_accelerator_ids()
        accelerators = {k: v for k, v in ids.items() if v}
        engine = self.work.backend.describe()  # as this worker resolves it: its node's dtype and device, not the driver's
        return {"pid": os.getpid(), "node": socket.gethostname(), "ip": ray.util.get_node_ip_address(), "accelerators": accelerators, "engine": engine}

    def process(self, items: list[tuple[PromptRecord, int]]) -> dict:
        started, cpu = time.perf_counter(), time.process_time()
        # images are decoded here, not shipped, by the driver's rule (a file that changed since its check is a reject)
        intake = [load(record, seed) for record, seed in items]
        entries: list[dict | None] = [reject_entry(r) if isinstance(r, Reject) else None for r in intake]
        made = iter(self.work.process([r for r in intake if isinstance(r, LoadedRecord)]))
        entries = [e if e is not None else next(made) for e in entries]
        return {"entries": entries, "seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu, "pid": os.getpid()}

    def close(self) -> None:
        self.work.close()


# -- the driver side ---------------------------------------------------------------------------
class RayWorkers:
    """``num_workers`` actors; ``map`` sends batches and yields their entries in source order."""

    local = False

    def __init__(self, spec: WorkSpec, settings: dict[str, Any]):
        self.spec = spec
        self.settings = settings
        self.n = settings["num_workers"]
        self.tp = tensor_parallel(spec)
        self.actors: list = []
        self.alive: list[bool] = []
        self.stats: list[dict] = []
        self.started_ray = False
        self.resources: dict[str, float] = {}
        self.peak_in_flight = 0
        self.address: str | None = None
        self._shutdown = False

    @property
    def pids(self) -> list[int]:
        """The current process id of each worker (changes when Ray restarts one)."""
        return [s["pid"] for s in self.stats]

    # -- starting --------------------------------------------------------------------------
    def start(self) -> None:
        import ray

        settings = self.settings
        if not ray.is_initialized():
            from seva_plugin.logs import quiet

            # workers' output would run through the progress bar; their errors still come back through ray.get
            kwargs = {"include_dashboard": False, "log_to_driver": not quiet(), **settings["init_kwargs"]}
            # null: a Ray of this build's own, unless RAY_ADDRESS names one (`ray job submit` sets it);
            # never a `ray start` cluster that happens to run on this machine
            address = settings["address"] or os.environ.get("RAY_ADDRESS") or "local"
            try:
                ray.init(address=address, **kwargs)
            except ConnectionError as exc:
                raise ConfigError(f"cannot join the Ray cluster at ray.address={address!r}: {exc}") from None
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"ray.init() refused ray.init_kwargs {settings['init_kwargs']}: {exc}") from None
            self.started_ray = address == "local"
            self._shutdown = True  # disconnect (and stop a Ray we started) when the build ends
        # else: this process was connected already (a notebook, a test): use that Ray and leave it running
        self.address = ray.get_runtime_context().gcs_address
        self.resources = self._resources(ray.cluster_resources())
        options = actor_options(self.resources, settings["max_restarts"])
        threads = int(self.resources["CPU"]) if self.resources.get("CPU", 0) >= 1 and not self.resources.get("GPU") else None
        remote = ray.remote(_Worker).options(**options)
        self.actors = [remote.remote(self.spec, threads, os.getcwd()) for _ in range(self.n)]
        self.alive = [True] * self.n
        refs = [a.ready.remote() for a in self.actors]
        done, waiting = ray.wait(refs, num_returns=len(refs), timeout=START_TIMEOUT_S)
        if waiting:
            raise WorkersLost(
                f"{len(waiting)} of {self.n} Ray workers did not start within {START_TIMEOUT_S} s "
                f"(each asks for {self.resources}; the cluster has {ray.available_resources()} free)."
            )
        for index, ref in enumerate(refs):
            try:
                info = _unwrap(ray, ref)
            except ray.exceptions.RayActorError as exc:
                raise WorkersLost(f"Ray worker {index} could not start: {exc}") from None
            self.stats.append({"index": index, **info, "restarts": 0, **new_stats()})

    def _resources(self, cluster: dict[str, float]) -> dict[str, float]:
        wanted = self.settings["resources_per_worker"]
        if wanted is None:
            wanted = {"GPU": self.tp} if cluster.get("GPU", 0) > 0 else {"CPU": 1}
        if self.tp > 1 and wanted.get("GPU", 0) < self.tp:
            raise ConfigError(f"backend.tensor_parallel_size={self.tp} needs ray.resources_per_worker to give each worker {self.tp} GPUs, got {wanted}.")
        for key, amount in wanted.items():
            total = cluster.get(key, 0)
            if amount * self.n > total:
                raise ConfigError(
                    f"ray.num_workers={self.n} workers with {{{key}: {amount}}} each need {amount * self.n:g} {key}, "
                    f"but the Ray cluster has {total:g}. Lower ray.num_workers, change ray.resources_per_worker, or add nodes."
                )
        return dict(wanted)

    # -- running ---------------------------------------------------------------------------
    def map(self, items: Iterable[tuple[list[LoadedRecord], list[Reject]]]) -> Iterator[tuple[list[Reject], list[dict]]]:
        import ray

        per_worker = self.settings["batches_per_worker"]
        window = self.n * (per_worker + 1)  # sent but not yet handed back: bounds the driver's memory
        source = iter(items)
        exhausted = False
        rejects: dict[int, list[Reject]] = {}
        done: dict[int, list[dict]] = {}
        payloads: dict[int, list] = {}
        attempts: dict[int, int] = {}
        in_flight: dict = {}  # ref -> (seq, worker)
        load = [0] * self.n
        sent = handed = 0

        def submit(seq: int, avoid: int | None = None) -> None:
            live = [i for i in range(self.n) if self.alive[i]]
            if not live:
                raise WorkersLost("every Ray worker died and none could be restarted; finished batches are journaled, rerun to resume.")
            choices = [i for i in live if i != avoid] or live
            worker = min(choices, key=lambda i: (load[i], i))
            ref = self.actors[worker].process.remote(payloads[seq])
            in_flight[ref] = (seq, worker)
            load[worker] += 1

        try:
            while True:
                while not exhausted and sent - handed < window and min((load[i] for i in range(self.n) if self.alive[i]), default=per_worker) < per_worker:
                    try:
                        batch, batch_rejects = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    rejects[sent] = batch_rejects
                    if batch:
                        payloads[sent] = [(r.record, r.seed) for r in batch]
                        attempts[sent] = 0
                        submit(sent)
                    else:
                        done[sent] = []
                    sent += 1
                    self.peak_in_flight = max(self.peak_in_flight, sent - handed)
                if handed in done:
                    yield rejects.pop(handed), done.pop(handed)
                    handed += 1
                    continue
                if exhausted and handed == sent:
                    return
                if not in_flight:  # batches left and no worker to run them
                    raise WorkersLost("every Ray worker died and none could be restarted; finished batches are journaled, rerun to resume.")
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in ready:
                    seq, worker = in_flight.pop(ref)
                    load[worker] -= 1
                    try:
                        result = _unwrap(ray, ref)
                    except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.OutOfMemoryError) as exc:
                        self._lost(ray, worker, exc)
                        attempts[seq] += 1
                        if attempts[seq] > self.settings["max_restarts"] + 1:
                            raise WorkersLost(
                                f"a batch failed on {attempts[seq]} workers in a row ({exc.__class__.__name__}); finished batches are journaled, "
                                "rerun to resume."
                            ) from exc
                        submit(seq, avoid=worker)
                        continue
                    done[seq] = result["entries"]
                    del payloads[seq]
                    self._count(worker, result)
        finally:
            for ref in in_flight:  # the build stopped early (an error, Ctrl-C): drop queued work
                try:
                    ray.cancel(ref)
                except Exception:  # noqa: BLE001, S110 - the actors are killed next anyway
                    pass

    def _count(self, worker: int, result: dict) -> None:
        s = self.stats[worker]
        if result["pid"] != s["pid"]:
            s["restarts"] += 1
            s["pid"] = result["pid"]
        add_batch(s, len(result["entries"]), result["seconds"], result["cpu"])

    def _lost(self, ray, worker: int, exc: Exception) -> None:
        """A worker's call failed because the worker died. Ray restarts it up to ``max_restarts`` times (and
        retries its calls itself); once it reports the actor dead for good, no more batches go to it."""
        s = self.stats[worker]
        s["failures"] = s.get("failures", 0) + 1
        if isinstance(exc, ray.exceptions.ActorDiedError) or s["failures"] > self.settings["max_restarts"]:
            try:
                ray.get(self.actors[worker].ready.remote(), timeout=60)
            except Exception:  # noqa: BLE001 - any failure here means the worker is gone
                self.alive[worker] = False
                print(f"seva build: Ray worker {worker} died ({exc.__class__.__name__}); its batches go to the other workers.", file=sys.stderr)

    # -- reporting and stopping ------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            "ray": True,
            "address": None if self.started_ray else self.address,
            "num_workers": self.n,
            "resources_per_worker": self.resources,
            "batches_per_worker": self.settings["batches_per_worker"],
            "peak_batches_in_flight": self.peak_in_flight,
            "workers": [
                {**{k: s[k] for k in ("index", "node", "ip", "pid", "accelerators", "engine", "restarts")}, "alive": self.alive[s["index"]], **throughput(s)}
                for s in self.stats
            ],
        }

    def close(self) -> None:
        if "ray" not in sys.modules:
            return
        import ray

        if not ray.is_initialized():
            return
        closing = [a.close.remote() for a, alive in zip(self.actors, self.alive, strict=True) if alive]
        if closing:
            ray.wait(closing, num_returns=len(closing), timeout=60)
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
        if getattr(self, "_shutdown", False):
            ray.shutdown()


def _unwrap(ray, ref, timeout: float | None = None):
    """``ray.get``, with an exception raised in a worker re-raised as itself (a clean ``error:`` line in the CLI)."""
    try:
        return ray.get(ref, timeout=timeout)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, SevaError):
            raise cause from None
        raise

"""Sending a build's batches to Ray workers and taking their entries back in source order, through
worker deaths (``RayWorkers.map``).

A batch is sent as one :class:`Piece`. When the worker running a piece dies (a crash, a kill, the
out-of-memory killer), Ray restarts the worker (nothing is sent to it until it answers again, so a
failed call always means a death while the piece was on it) and the piece is sent again, whole, to another: a
worker killed from outside changes nothing, not even the batches (so the data is byte-identical to
a one-process build's). A piece that kills a worker a second time holds a record that crashes the
process (a segfault in a decoder or a kernel): it is split in halves, each sent alone to an idle
worker (so a death is blamed on the piece that was running), down to the one record, which becomes
a reject (``worker_crash``) naming it, while the others get their pairs. Ray's own out-of-memory
kill is not a record's fault: the piece is sent again, and the build stops when it keeps happening.

A worker that dies ``max_restarts + 1`` times in a row without finishing a piece (deaths a rejected
record explains do not count), or that stays unreachable, gets no more pieces; when none is left the
build stops (finished batches are journaled: rerun to resume).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from seva_plugin.errors import short
from seva_plugin.pipeline.records import LoadedRecord, Reject
from seva_plugin.pipeline.workers import WorkersLost

if TYPE_CHECKING:
    from seva_plugin.pipeline.ray_workers import RayWorkers

WORKER_CRASH = "worker_crash"
UNREACHABLE_S = 300  # a worker Ray does not bring back within this is given up
RESUME = "finished batches are journaled, rerun to resume."


@dataclass
class Piece:
    seq: int  # the batch it belongs to
    start: int  # its records: the batch's [start:end]
    end: int
    deaths: int = 0  # times the worker running it died
    ooms: int = 0  # times Ray's memory monitor killed it
    avoid: int | None = None  # the worker it last failed on

    @property
    def suspect(self) -> bool:
        """Run alone on a worker, so that a death is blamed on it and nothing else."""
        return self.deaths > 0


def crash_entry(record, exc: BaseException) -> dict:
    reason = f"the Ray worker process died answering this record, alone and with others (a crash such as a segfault): {short(exc, 300)}"
    return {"kind": "reject", "id": record.id, "reason": reason, "code": WORKER_CRASH, "inputs": None}


class Dispatch:
    """One ``map`` of ``workers``: its pieces, the workers' loads, and the batches done but not handed back."""

    def __init__(self, workers: RayWorkers):
        import ray

        self.ray, self.w = ray, workers
        self.per_worker = workers.settings["batches_per_worker"]
        self.payloads: dict[int, list] = {}
        self.parts: dict[int, dict[int, list[dict]]] = {}  # seq -> piece start -> entries
        self.queue: deque[Piece] = deque()
        self.in_flight: dict = {}  # ref -> (piece, worker)
        self.load = [0] * workers.n
        self.alone = [False] * workers.n  # running a suspect piece
        self.deaths_in_a_row = [0] * workers.n
        self.down_since: dict[int, float] = {}  # workers that died, until they answer a ping
        self.pings: dict = {}  # ref -> worker

    def run(self, items: Iterable[tuple[list[LoadedRecord], list[Reject]]]) -> Iterator[tuple[list[Reject], list[dict]]]:
        window = self.w.n * (self.per_worker + 1)  # sent but not yet handed back: bounds the driver's memory
        source, exhausted = iter(items), False
        rejects: dict[int, list[Reject]] = {}
        done: dict[int, list[dict]] = {}
        sent = handed = 0
        try:
            while True:
                while not exhausted and sent - handed < window and not self.queue and self._free_worker(suspect=False) is not None:
                    try:
                        batch, rejects[sent] = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    if batch:
                        self.payloads[sent], self.parts[sent] = [(r.record, r.seed) for r in batch], {}
                        self.queue.append(Piece(sent, 0, len(batch)))
                    else:
                        done[sent] = []
                    sent += 1
                    self.w.peak_in_flight = max(self.w.peak_in_flight, sent - handed)
                self._dispatch()
                if handed in done:
                    yield rejects.pop(handed), done.pop(handed)
                    handed += 1
                    continue
                if exhausted and handed == sent:
                    return
                if not any(self.w.alive):
                    raise WorkersLost(f"every Ray worker died and none could be brought back; {RESUME}")
                waiting = [*self.in_flight, *self.pings]
                if not waiting:  # pieces queued for workers that are busy alone or gone: cannot happen while one is alive
                    raise WorkersLost(f"no Ray worker can take the remaining batches; {RESUME}")
                ready, _ = self.ray.wait(waiting, num_returns=1, timeout=1.0)
                for ref in ready:
                    if ref in self.pings:
                        self._pong(ref)
                        continue
                    finished = self._collect(ref)
                    if finished is not None:
                        done[finished] = self._join(finished)
        finally:
            for ref in self.in_flight:  # the build stopped early (an error, Ctrl-C): drop queued work
                try:
                    self.ray.cancel(ref)
                except Exception:  # noqa: BLE001, S110 - the actors are killed next anyway
                    pass

    # -- sending ---------------------------------------------------------------------------------
    def _free_worker(self, suspect: bool, avoid: int | None = None) -> int | None:
        """A worker for a piece: a suspect one needs an idle worker; others queue behind at most ``batches_per_worker - 1``."""
        live = [i for i in range(self.w.n) if self.w.alive[i] and i not in self.down_since and not self.alone[i] and self.load[i] < self.per_worker]
        if suspect:
            live = [i for i in live if self.load[i] == 0]
        choices = [i for i in live if i != avoid] or live
        return min(choices, key=lambda i: (self.load[i], i)) if choices else None

    def _dispatch(self) -> None:
        for _ in range(len(self.queue)):
            piece = self.queue[0]
            worker = self._free_worker(piece.suspect, piece.avoid)
            if worker is None:
                return
            self.queue.popleft()
            ref = self.w.actors[worker].process.remote(self.payloads[piece.seq][piece.start : piece.end])
            self.in_flight[ref] = (piece, worker)
            self.load[worker] += 1
            self.alone[worker] = piece.suspect

    # -- results ---------------------------------------------------------------------------------
    def _collect(self, ref) -> int | None:
        """Take one finished call; return its batch's seq when the whole batch is done."""
        ray = self.ray
        piece, worker = self.in_flight.pop(ref)
        self.load[worker] -= 1
        self.alone[worker] = False
        try:
            result = self.w.unwrap(ref)
        except ray.exceptions.OutOfMemoryError as exc:  # Ray's memory monitor killed it: not the records' fault
            piece.ooms += 1
            if piece.ooms > self.w.settings["max_restarts"]:
                raise WorkersLost(
                    f"Ray's memory monitor killed a batch {piece.ooms} times (from '{self._record(piece, 0).id}'): not a record's fault. "
                    f"Lower backend.batch_size or give each worker more memory; {RESUME}"
                ) from exc
            self._died(worker, exc)
            piece.avoid = worker
            self.queue.appendleft(piece)
            return None
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
            if isinstance(exc, ray.exceptions.ActorDiedError):  # dead for good (Ray restarts a worker that dies otherwise)
                self.w.retire(worker, "Ray reports it dead for good")
            self._died(worker, exc)
            return self._blame(piece, worker, exc)
        self.deaths_in_a_row[worker] = 0
        self.w.count(worker, result)
        return self._finish(piece, result["entries"])

    def _died(self, worker: int, exc: BaseException) -> None:
        """``worker`` died (every call on it fails): count it once, and ping it until Ray has it back."""
        if worker in self.down_since or not self.w.alive[worker]:
            return
        self.down_since[worker] = time.time()
        self.deaths_in_a_row[worker] += 1
        if self.deaths_in_a_row[worker] > self.w.settings["max_restarts"]:
            self.w.retire(worker, f"it died {self.deaths_in_a_row[worker]} times in a row ({type(exc).__name__})")
            return
        self._ping(worker)

    def _ping(self, worker: int) -> None:
        self.pings[self.w.actors[worker].ready.remote()] = worker

    def _pong(self, ref) -> None:
        worker = self.pings.pop(ref)
        try:
            info = self.w.unwrap(ref)
        except self.ray.exceptions.RayError as exc:
            if isinstance(exc, self.ray.exceptions.ActorDiedError):
                self.w.retire(worker, "Ray reports it dead for good")
            elif time.time() - self.down_since[worker] > UNREACHABLE_S:
                self.w.retire(worker, f"Ray did not bring it back within {UNREACHABLE_S} s")
            else:
                time.sleep(0.2)
                self._ping(worker)
            return
        self.down_since.pop(worker, None)
        self.w.came_back(worker, info["pid"])

    def _blame(self, piece: Piece, worker: int, exc: BaseException) -> int | None:
        """A worker died running ``piece``: send it again whole the first time, then split it down to the record."""
        piece.deaths += 1
        piece.avoid = worker
        size = piece.end - piece.start
        if piece.deaths < 2:
            self.queue.appendleft(piece)
        elif size > 1:
            half = piece.start + size // 2
            self.queue.extendleft([Piece(piece.seq, half, piece.end, 1, avoid=worker), Piece(piece.seq, piece.start, half, 1, avoid=worker)])
        else:
            self.deaths_in_a_row = [0] * self.w.n  # explained by the record
            return self._finish(piece, [crash_entry(self._record(piece, 0), exc)])
        return None

    def _record(self, piece: Piece, k: int):
        return self.payloads[piece.seq][piece.start + k][0]

    def _finish(self, piece: Piece, entries: list[dict]) -> int | None:
        parts = self.parts[piece.seq]
        parts[piece.start] = entries
        if sum(len(e) for e in parts.values()) < len(self.payloads[piece.seq]):
            return None
        return piece.seq

    def _join(self, seq: int) -> list[dict]:
        parts = self.parts.pop(seq)
        del self.payloads[seq]
        return [e for start in sorted(parts) for e in parts[start]]

"""How a backend groups the requests of one call, and keeps the inputs it made ahead: shared by every
backend, so they batch alike."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from seva_plugin.contract import GenerationRequest, View


class Viewed(Protocol):
    @property
    def view(self) -> View: ...


R = TypeVar("R", bound=Viewed)


def runs_by_view(requests: Sequence[R]) -> list[list[R]]:
    """Consecutive requests (generation or scoring) with the same view: their images are processed together."""
    runs: list[list[R]] = []
    for r in requests:
        if runs and runs[-1][0].view == r.view:
            runs[-1].append(r)
        else:
            runs.append([r])
    return runs


def inputs_key(requests: Sequence[GenerationRequest]) -> tuple[Any, ...]:
    """What determines a call's model inputs: the records, views, prompts, prefixes and answer counts.
    Records and views are held (not their ``id()``, which a new object could reuse once they are gone)
    and compared by identity (:func:`same_inputs`)."""
    return tuple((r.record, r.view, r.prompt, r.system, r.prefix, r.n) for r in requests)


def same_inputs(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) == len(b) and all(x[0] is y[0] and x[1:] == y[1:] for x, y in zip(a, b, strict=True))


class PreparedInputs:
    """Inputs a backend made ahead in the build's prefetch thread (``Backend.prepare``), found again
    by ``generate`` for the same requests. Thread-safe, and bounded: a strategy that never asks for
    what was prepared must not make it leak."""

    def __init__(self, keep: int = 4):
        self.keep = keep
        self._entries: deque[tuple[tuple[Any, ...], Any]] = deque()  # (inputs_key, inputs)
        self._lock = threading.Lock()

    def put(self, requests: Sequence[GenerationRequest], inputs: Any) -> None:
        with self._lock:
            self._entries.append((inputs_key(requests), inputs))
            while len(self._entries) > self.keep:
                self._entries.popleft()

    def take(self, requests: Sequence[GenerationRequest]) -> Any | None:
        """The inputs prepared for exactly these requests (then forgotten), or None."""
        key = inputs_key(requests)
        with self._lock:
            for entry in self._entries:
                if same_inputs(entry[0], key):
                    self._entries.remove(entry)
                    return entry[1]
        return None

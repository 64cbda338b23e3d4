"""How a backend groups the requests of one call, and keeps the inputs it made ahead: shared by every
backend, so they batch alike."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

from seva_plugin.interfaces import GenerationRequest


def runs_by_view(requests: Sequence[GenerationRequest]) -> list[list[GenerationRequest]]:
    """Consecutive requests with the same view (their images are processed together)."""
    runs: list[list[GenerationRequest]] = []
    for r in requests:
        if runs and runs[-1][0].view == r.view:
            runs[-1].append(r)
        else:
            runs.append([r])
    return runs


def inputs_key(requests: Sequence[GenerationRequest]) -> tuple:
    """What determines a call's model inputs: the record objects, views, prefixes and answer counts
    (the key under which inputs prepared in the prefetch thread are found again)."""
    return tuple((id(r.record), r.view.key(), r.prefix, r.n) for r in requests)


class PreparedInputs:
    """Inputs a backend made ahead in the build's prefetch thread (``Backend.prepare``), found again
    by ``generate`` for the same requests. Thread-safe, and bounded: a strategy that never asks for
    what was prepared must not make it leak."""

    def __init__(self, keep: int = 4):
        self.keep = keep
        self._entries: deque = deque()  # (inputs_key, inputs)
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
                if entry[0] == key:
                    self._entries.remove(entry)
                    return entry[1]
        return None

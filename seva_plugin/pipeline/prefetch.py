"""Running a generator ahead in a background thread (image decoding overlaps generation)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def prefetch(iterator: Generator[T, Any, Any], depth: int = 2) -> Iterator[T]:
    """Run ``iterator`` in a background thread, ``depth`` items ahead.

    When the consumer stops early (an error, Ctrl-C, ``close()``), the thread stops at its next
    hand-over instead of blocking on a full queue, and closes ``iterator`` (a source's open file).
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in iterator:
                if not put(item):
                    return
            put(done)
        except BaseException as exc:  # re-raised in the consumer
            put(exc)
        finally:
            iterator.close()

    thread = threading.Thread(target=work, daemon=True, name="seva-prefetch")
    thread.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)

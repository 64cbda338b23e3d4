"""Torch's CPU threads during a build: chosen, not left to torch's one-per-core default.

On a CPU build (no CUDA device) the build runs torch with ``SEVA_TORCH_THREADS`` threads; unset, with
one, unless ``OMP_NUM_THREADS`` is set (torch then follows it). ``SEVA_TORCH_THREADS=0`` leaves
torch's own default. Measured on this project's 2-core machine under other jobs' load (docs/performance.md,
"Torch threads on CPU"): a tiny LLaVA build of 256 prompts generated in 1.9-5.6 s with one thread
and 8.8-16.5 s with torch's default two, writing the same bytes; OpenMP's spinning threads lose
more than a second thread gains on ops this small and a shared core. A GPU build, and a Ray worker
(one thread per CPU it reserved, ``ray_workers.py``), keep their own rule.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from seva_plugin.errors import ConfigError, show

ENV = "SEVA_TORCH_THREADS"


def cpu_threads() -> int | None:
    """The torch threads a CPU build runs with, or None to leave torch's."""
    raw = os.environ.get(ENV)
    if raw is None or not raw.strip():
        return None if os.environ.get("OMP_NUM_THREADS") else 1
    try:
        n = int(raw)
    except ValueError:
        n = -1
    if n < 0:
        raise ConfigError(f"{ENV} must be a whole number of threads (0: torch's default), got {show(raw)}.")
    return n or None


@contextmanager
def build_threads() -> Iterator[int | None]:
    """Run the block with ``cpu_threads()`` torch threads on a machine without CUDA; the caller's
    setting comes back after it. Yields the number set, or None when torch's was left."""
    import torch

    n = None if torch.cuda.is_available() else cpu_threads()
    if n is None:
        yield None
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)

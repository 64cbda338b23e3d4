"""One Ctrl-C (or SIGTERM) ends a ``seva`` command within seconds, leaving no process it started.

The first signal raises KeyboardInterrupt in the main thread, as Python does, so the command cleans
up on its way out: a build journals nothing half-done and shuts its engine down. That is not enough
on its own: one Ctrl-C during vLLM's engine start-up left the build running for over 120 s
(``tests/commands/test_interrupt.py``). So the first signal also starts a timer: if the command
still runs ``GRACE_S`` seconds later, every process it started is ended (SIGTERM, then SIGKILL) and
it exits. A second signal does that at once. The exit status is the shell's for the first signal:
130 after Ctrl-C (SIGINT), 143 after SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

from seva_plugin.commands import processes

GRACE_S = 15  # from the first signal to the forced exit: a clean stop of a vLLM engine took 5 s, over 10 s on a loaded machine (vllm_engine.py)
KILL_AFTER_S = 3  # from SIGTERM to SIGKILL for the processes left
MESSAGE = "interrupted: finished batches are kept; rerun the same command to resume."
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def end_descendants() -> None:
    """SIGTERM to every process this one started (and to their process groups: vLLM's engine core has
    one, which also holds workers it started), SIGKILL to those left after ``KILL_AFTER_S``."""
    groups: set[int] = set()
    for sig, wait in ((signal.SIGTERM, KILL_AFTER_S), (signal.SIGKILL, 0)):
        pids = processes.descendants(os.getpid())
        groups |= processes.groups_below(os.getpid())
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, sig)
        deadline = time.time() + wait
        while time.time() < deadline and (processes.descendants(os.getpid()) or any(processes.group_alive(g) for g in groups)):
            time.sleep(0.1)


def exit_code(received: list[int]) -> int:
    """128 + the first signal received (130 for Ctrl-C, 143 for SIGTERM), as a shell reports a
    command that signal ended; 130 for a KeyboardInterrupt no signal handler saw."""
    return 128 + (received[0] if received else signal.SIGINT)


def force_exit(received: list[int]) -> None:
    end_descendants()
    print(f"\n{MESSAGE}", file=sys.stderr, flush=True)
    exit_now(exit_code(received))


def exit_now(code: int) -> None:
    """Exit with ``code`` at once: Python's own exit could wait on threads a library left behind."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


@contextlib.contextmanager
def handled() -> Iterator[list[int]]:
    """Ctrl-C and SIGTERM as described above while the block runs (main thread only). Yields the list
    of signals received; after one, the handler stays: the command is on its way out."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def on_signal(signum, frame):
        if received:
            force_exit(received)
        received.append(signum)
        threading.Thread(target=_exit_after_grace, args=(received,), name="seva-interrupt", daemon=True).start()
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, on_signal) for sig in SIGNALS}
    try:
        yield received
    finally:
        if not received:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _exit_after_grace(received: list[int]) -> None:
    time.sleep(GRACE_S)
    force_exit(received)

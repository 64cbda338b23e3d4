"""The ``vllm`` backend's engine processes end with the build, even when the build is killed outright.

``close()``, Ctrl-C and SIGTERM shut the engine down from the build's process (``vllm.py``). A
``kill -9`` or the kernel's out-of-memory killer runs nothing there, and vLLM's engine core does not
watch for its parent's death (its workers do, through a pipe from the engine core): it would stay,
holding its memory (on a GPU, the GPU's). So the engine core asks Linux to send it SIGTERM when its
parent dies (``prctl(PR_SET_PDEATHSIG)``), on which vLLM shuts itself and its workers down.

The engine core also leaves the build's process group, its workers with it: a Ctrl-C in the terminal
then reaches the build alone, which stops the engine in order (``close()``). Sent to the whole group,
it stopped vLLM's worker in the middle of a step, and the engine core printed a fatal-error traceback.

This runs inside vLLM's own processes as a vLLM "general plugin" (entry point group
``vllm.general_plugins`` in pyproject.toml; vLLM loads those in every process it starts). It acts
only in a direct child of the process named by ``SEVA_VLLM_BUILD_PID``, which a ``vllm`` backend
sets while it starts an engine from its main thread (Linux signals the child when the *thread*
that started it ends), so other vLLM uses are untouched.
"""

from __future__ import annotations

import os
import sys

ENV = "SEVA_VLLM_BUILD_PID"
PR_SET_PDEATHSIG = 1


def exit_with_parent() -> None:
    """In a process a ``vllm`` backend's engine started: SIGTERM when the parent dies."""
    build_pid = os.environ.get(ENV)
    # the engine core only (a child of the build): its workers already watch it through a pipe
    if not build_pid or not sys.platform.startswith("linux") or str(os.getppid()) != build_pid:
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # not glibc-like: nothing to do
        return
    if os.getppid() == 1:  # the parent died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)
    try:
        os.setpgid(0, 0)  # before the workers start: they inherit the group
    except OSError:  # a session leader cannot: it is in no terminal's group then
        pass

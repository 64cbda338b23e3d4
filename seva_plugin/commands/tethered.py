"""Running a command that ends with this process, whatever it started included, however this process ends.

:func:`run` starts ``python -m seva_plugin.commands.tethered CMD...``: a small supervisor that runs
CMD in a process group of CMD's own. The supervisor asks Linux for SIGTERM when its parent dies
(``prctl(PR_SET_PDEATHSIG)``, as the vLLM engine does: ``plugins/backends/vllm_process.py``) and,
on it, ends CMD's whole group: CMD and whatever CMD started (``llamafactory-cli`` launches
``torchrun`` and its workers on several GPUs). Ctrl-C, SIGTERM or an error in this process end the
group the same way (the supervisor, in a session of its own, gets no Ctrl-C from the terminal).
Without it, a ``kill -9`` of ``seva iterate`` left ``llamafactory-cli train`` running, writing into
the adapter folder the rerun was training into.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

from seva_plugin.commands import processes

PARENT = "SEVA_TETHERED_PARENT"  # the pid the supervisor belongs to
GRACE_S = 10  # from SIGTERM to SIGKILL for the group
PR_SET_PDEATHSIG = 1


def run(cmd: list[str], stdout) -> int:
    """Run ``cmd`` tethered to this process; its exit code. Output (stdout and stderr) goes to ``stdout``."""
    env = {**os.environ, PARENT: str(os.getpid())}
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "seva_plugin.commands.tethered", *cmd], stdout=stdout, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    try:
        return supervisor.wait()
    except BaseException:  # Ctrl-C, SIGTERM turned into SystemExit, an error: the command goes with us
        supervisor.terminate()  # it ends the command's group, then itself
        try:
            supervisor.wait(timeout=GRACE_S + 5)
        except subprocess.TimeoutExpired:
            supervisor.kill()
        raise


def run_logged(cmd: list[str], log_path: str) -> tuple[int, str]:
    """:func:`run` with ``cmd`` and its output written to ``log_path``: the exit code and the log's last 25 lines."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        code = run(cmd, fh)
    with open(log_path, encoding="utf-8", errors="replace") as fh:
        return code, "".join(fh.readlines()[-25:])


def end_group(pgid: int, leader: subprocess.Popen) -> None:
    """SIGTERM to process group ``pgid`` (led by ``leader``), SIGKILL to what is left of it after ``GRACE_S``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.time() + GRACE_S
    while time.time() < deadline and processes.group_alive(pgid):
        with contextlib.suppress(subprocess.TimeoutExpired):
            leader.wait(timeout=0.1)  # reaps the leader: a zombie still counts as the group's
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _exit_with_parent() -> None:
    """SIGTERM to this process when its parent dies (Linux); at once if it is already gone."""
    parent = int(os.environ.get(PARENT, "0"))
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if parent and os.getppid() != parent:  # it died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


def main(cmd: list[str]) -> int:
    """The supervisor: runs ``cmd`` in a process group of its own and ends that group with its parent."""
    child: list[subprocess.Popen] = []

    def stop(signum, frame):
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if child:
            end_group(child[0].pid, child[0])
        os._exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    _exit_with_parent()
    child.append(subprocess.Popen(cmd, start_new_session=True))
    code = child[0].wait()
    end_group(child[0].pid, child[0])  # what the command left running in its group
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

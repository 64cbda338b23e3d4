"""What runs below this process, read from Linux's ``/proc`` (elsewhere: nothing known, nothing to do)."""

from __future__ import annotations

import contextlib
import glob
import os


def table() -> dict[int, tuple[str, int, int]]:
    """Every process: pid -> (state, parent pid, process group)."""
    out: dict[int, tuple[str, int, int]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError), open(stat) as fh:
            state, ppid, pgrp = fh.read().rsplit(")", 1)[1].split()[:3]
            out[int(stat.split("/")[2])] = (state, int(ppid), int(pgrp))
    return out


def descendants(pid: int) -> list[int]:
    """Every live (not zombie) process below ``pid``."""
    parents = {p: ppid for p, (state, ppid, _) in table().items() if state != "Z"}
    found: list[int] = []
    frontier = {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier and p not in found}
        found += sorted(frontier)
    return found


def group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process of group ``pgid`` is left: a zombie no one reaps here does not count."""
    if os.path.isdir("/proc/self"):
        return any(group == pgid and state != "Z" for state, _, group in table().values())
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def groups_below(pid: int) -> set[int]:
    """The process groups of the processes below ``pid`` other than this process's own: a group
    (vLLM's engine core's) also holds the processes it started after their parent died."""
    own = os.getpgrp()
    procs = table()
    return {procs[p][2] for p in descendants(pid) if p in procs and procs[p][2] != own}

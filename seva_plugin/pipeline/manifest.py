"""A finished build's record: the manifest (config, versions, counts, workers, files) and its result."""

from __future__ import annotations

import functools
import platform
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import seva_plugin
from seva_plugin.errors import SevaError, show
from seva_plugin.interfaces import WriteResult

PACKAGES = ("torch", "transformers", "llamafactory", "peft", "trl", "datasets", "pillow", "pluggy")


@dataclass
class BuildResult:
    name: str
    dataset_dir: str
    data_file: str
    manifest_file: str
    rejects_file: str
    kept: int
    dropped: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    resumed: bool = False
    seconds: float = 0.0
    registry: str | None = None  # the dataset_info.json the writer registered the dataset in, if any

    def summary(self) -> str:
        def fmt(counts):
            return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"

        return (
            f"{self.kept} pair{'' if self.kept == 1 else 's'} kept in {self.data_file}\n"
            f"dropped: {fmt(self.dropped)}\n"
            f"rejected inputs: {fmt(self.rejected)}"
            + (f" (see {self.rejects_file})" if self.rejected else "")
            + (f"\ndataset '{self.name}' registered in {self.registry}" if self.registry else "")
        )


def manifest(
    *,
    name: str,
    config: dict[str, Any],
    fingerprint: str,
    kept: int,
    dropped: Counter[str],
    rejected: Counter[str],
    resumed: bool,
    workers: dict[str, Any] | None,
    engine: dict[str, Any] | None = None,
    started: float,
    seconds: float,
    files: dict[str, Any],
) -> dict[str, Any]:
    """What a build records beside its data: enough to tell later how the data was made."""
    return {
        "name": name,
        "seva_plugin": seva_plugin.__version__,
        "config": config,
        "fingerprint": fingerprint,
        "versions": {"python": platform.python_version(), **{p: package_version(p) for p in PACKAGES}},
        "counts": {"kept": kept, "dropped": dict(dropped), "rejected": dict(rejected), "records": kept + sum(dropped.values()) + sum(rejected.values())},
        "resumed": resumed,
        "workers": workers,
        "engine": engine,
        "timings": {"started": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started)), "seconds_this_run": round(seconds, 2)},
        "files": files,
    }


def checked_write(writer: Any, result: Any) -> WriteResult:
    """A writer's result, or an error naming the writer when it is not a ``WriteResult`` (the pairs
    stay in the journal: a rerun with a fixed writer only writes)."""
    if not isinstance(result, WriteResult):
        raise SevaError(
            f"writer '{writer.name}' returned {show(result, 80)} from write(), not a seva_plugin.WriteResult; its pairs are kept in the "
            "build's journal, so rerunning the build with a fixed writer writes them without generating again."
        )
    return result


@functools.cache  # the installed versions do not change during a process; reading them is ~15 ms a build
def package_version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def progress_text(name: str, counts: Counter, total: int | None = None) -> str:
    """The progress bar's text: records done (every record is kept, dropped or rejected), of
    ``total`` when the source knows its length, then each."""
    done = counts["pair"] + counts["drop"] + counts["reject"]
    records = f"{done} of {plural(total, 'record')}" if total is not None else plural(done, "record")
    return f"seva build {name}: {records} done, {plural(counts['pair'], 'pair')} kept, {counts['drop']} dropped, {counts['reject']} rejected"


def nothing_kept(result: BuildResult, entries) -> str:
    """Why a build kept no pairs: the commonest reject (or drop) reason, with an example from the journal's ``entries``."""
    records = sum(result.rejected.values()) + sum(result.dropped.values())
    if not records:
        return f"the build kept no pairs: its source gave no records (see {result.manifest_file}). Nothing was registered."
    rejected, dropped = sum(result.rejected.values()), sum(result.dropped.values())
    kind, counts, key = ("reject", result.rejected, "code") if rejected >= dropped else ("drop", result.dropped, "reason")
    top, n = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    example: dict[str, Any] = next((e for e in entries if e["kind"] == kind and e.get(key) == top), {})
    what = "rejected" if kind == "reject" else "dropped"
    detail = f"{example.get('id')!s}: {example.get('reason')}" if kind == "reject" else str(example.get("id"))
    return (
        f"the build kept no pairs from {plural(records, 'record')} ({rejected} rejected, {dropped} dropped). "
        f"Most were {what} as {top} ({n} of {records}), e.g. {show(detail, 300)[1:-1]}. "
        f"Every reason is in {result.rejects_file} and {result.manifest_file}; nothing was registered in dataset_info.json."
    )

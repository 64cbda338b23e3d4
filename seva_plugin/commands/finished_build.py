"""Whether a build has finished, for commands that read a build's data without generating (``seva export``).

A build of dataset NAME in DATASET_DIR is *finished* when all of these hold:

1. ``NAME.manifest.json`` exists. The build writes it last, after the data, so a build that is
   running, was interrupted or never ran has none (or an older one; see 3).
2. The data the manifest describes is there and holds exactly ``counts.kept`` pairs. (Data that is
   not what the manifest records, by sha256, is listed in ``modified``: ``seva export`` refuses it
   unless allowed.)
3. The journal ``.seva/NAME.journal.jsonl``, if it exists, holds no work the manifest does not: it
   records the same config (its header's fingerprint is the manifest's), and its committed entries
   are those the build wrote its data from (the manifest's ``journal``: pairs and records). More entries
   mean a later run of the same build (a larger ``limit``, a resume) is going on or was
   interrupted; another fingerprint means a build with another config has started over.
   Without a journal (a copied or published dataset) the manifest and data decide.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field

from seva_plugin.errors import ConfigError
from seva_plugin.pipeline.claims import modified
from seva_plugin.pipeline.dataset_files import DatasetFiles
from seva_plugin.pipeline.journal import read_entries
from seva_plugin.plugins.writers.readback import count_records, data_location, layout_of


class UnfinishedBuild(ConfigError):
    """The build is not finished (or not there): nothing can be read from it yet."""


@dataclass
class FinishedBuild:
    files: DatasetFiles
    manifest: dict
    layout: str  # jsonl | parquet | trl
    location: str  # the data file or shard folder
    modified: list[str] = field(default_factory=list)  # data files that are not what the manifest records (their sha256)


def _rerun(files: DatasetFiles) -> str:
    return f"Finish it first: rerun the same `seva build` (it resumes, writing only what is missing; the data goes to {files.dataset_dir})."


def _journal_state(path: str) -> tuple[str | None, Counter]:
    """The journal's fingerprint and its committed entries by kind."""
    with open(path, "rb") as fh:
        try:
            header = json.loads(fh.readline())
        except (json.JSONDecodeError, UnicodeDecodeError):
            header = {}
    kinds = Counter(e.get("kind") for e in read_entries(path) if "id" in e)
    return (header.get("fingerprint") if isinstance(header, dict) else None), kinds


def finished_build(dataset_dir: str, name: str, allow_modified: bool = False) -> FinishedBuild:
    """The finished build of ``name`` in ``dataset_dir``, or UnfinishedBuild saying what is missing and what to do
    (``allow_modified``: data changed by hand may hold another number of pairs than the manifest counts)."""
    files = DatasetFiles(dataset_dir, name)
    has_journal = os.path.isfile(files.journal)
    if not os.path.isfile(files.manifest):
        if has_journal:
            done = sum(_journal_state(files.journal)[1].values())
            raise UnfinishedBuild(
                f"the build of '{name}' in {files.dataset_dir} has not finished: its journal {files.journal} holds {done} finished record(s) but "
                f"there is no manifest yet. {_rerun(files)}"
            )
        known = (
            sorted(f[: -len(".manifest.json")] for f in os.listdir(files.dataset_dir) if f.endswith(".manifest.json"))
            if os.path.isdir(files.dataset_dir)
            else []
        )
        raise UnfinishedBuild(
            f"no build named '{name}' in {files.dataset_dir}: {os.path.basename(files.manifest)} is missing. Builds there: {', '.join(known) or 'none'}."
        )
    try:
        manifest = files.read_manifest()
        counts = manifest["counts"]
        kept = int(counts["kept"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UnfinishedBuild(f"{files.manifest} is not a readable seva manifest ({type(exc).__name__}: {exc}); rebuild '{name}'.") from None
    layout = layout_of(manifest)
    location = data_location(files.dataset_dir, name, layout)
    changed = modified(files, manifest)
    found = count_records(location, layout)
    if found is None:
        raise UnfinishedBuild(f"the manifest of '{name}' describes {kept} pairs in {location}, which is missing. Rebuild it, or copy the data back.")
    if found != kept and not (allow_modified and changed):
        raise UnfinishedBuild(
            f"{location} holds {found} pairs but the manifest {files.manifest} counts {kept}: the data was changed or copied in part. Rebuild '{name}'."
        )
    if has_journal:
        fingerprint, kinds = _journal_state(files.journal)
        if fingerprint != manifest.get("fingerprint"):
            raise UnfinishedBuild(
                f"a build of '{name}' with a different config has started in {files.dataset_dir} since the manifest was written "
                f"(its journal {files.journal} records another config). {_rerun(files)} Or, to export the earlier data, move the journal away."
            )
        # the journal the build wrote its data from; it may hold more than the data: records past a lower
        # limit or gone from the source, pairs a Parquet writer left out (an image gone by the time it wrote)
        skipped = len(manifest.get("files", {}).get("data", {}).get("skipped") or [])
        journal = manifest.get("journal") or {"pairs": kept + skipped, "records": counts.get("records", kept) + skipped}
        records = journal["records"]
        if kinds["pair"] != journal["pairs"] or sum(kinds.values()) != records:
            raise UnfinishedBuild(
                f"the build of '{name}' has not finished: its journal holds {kinds['pair']} pairs ({sum(kinds.values())} records) "
                f"but the data and manifest hold {kept} ({records} records); a later run is going on or was interrupted. {_rerun(files)}"
            )
    return FinishedBuild(files, manifest, layout, location, changed)

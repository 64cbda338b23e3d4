"""Which files a build or an export may replace: only those seva-plugin wrote.

A dataset's manifest lists the files its build (or export) wrote, with their sha256 where known;
while a build or export replaces its outputs, a marker (``.seva/NAME.writing``) stands for the
manifest to come, so a write killed before its manifest is written does not lock the dataset out.
A file that no manifest of ours lists (the user's own ``NAME.jsonl``, a note in ``NAME/data/``) is
never replaced, ``overwrite`` or not; one that was changed since it was written is replaced only
with ``overwrite``. Every writer and both commands ask here, through ``DatasetFiles.check_replace``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from seva_plugin.errors import ConfigError
from seva_plugin.pipeline.files import atomic_write_json, sha256_file, write_errors

if TYPE_CHECKING:
    from seva_plugin.pipeline.dataset_files import DatasetFiles

OVERWRITE = "output.overwrite=true (seva export: --overwrite)"


@dataclass(frozen=True)
class Claims:
    files: dict[str, str | None]  # path -> the sha256 the manifest records (None: listed without one)
    folders: tuple[str, ...] = ()  # every file under these

    def covers(self, path: str) -> bool:
        return path in self.files or any(path.startswith(folder + os.sep) for folder in self.folders)


def own_manifest(files: DatasetFiles) -> dict | None:
    """The dataset's manifest when seva-plugin wrote it (a JSON object with its keys), else None."""
    try:
        with open(files.manifest, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and {"seva_plugin", "fingerprint", "files"} <= manifest.keys() else None


def claims(files: DatasetFiles) -> Claims:
    """What seva-plugin wrote for this dataset: what its manifest lists, and while a write is under way
    (or was killed) every file named after the dataset."""
    if os.path.exists(files.writing):
        named: dict[str, str | None] = {p: None for p in (files.data, files.rejects, files.export_rejects, files.manifest, files.card, files.sft)}
        return Claims(named, (files.shards, files.images))
    manifest = own_manifest(files)
    if manifest is None:
        return Claims({})
    listed: dict[str, str | None] = {files.manifest: None, files.rejects: None, files.export_rejects: None}
    recorded = manifest.get("files") or {}
    for key, path in (("rejects", files.rejects), ("export_rejects", files.export_rejects)):
        listed[path] = (recorded.get(key) or {}).get("sha256")
    listed.update(data_files(files, manifest))
    sft = (recorded.get("data") or {}).get("sft") or {}
    if sft.get("path"):  # output.sft's supervised set (llamafactory writer)
        listed[files.sft] = sft.get("sha256")
    if (recorded.get("data") or {}).get("format") in ("parquet", "trl"):
        listed[files.card] = None
    return Claims(listed, (files.images,) if (recorded.get("data") or {}).get("images") else ())


def data_files(files: DatasetFiles, manifest: dict) -> dict[str, str | None]:
    """The data files a manifest lists (where they are now: the dataset may have been moved), with their sha256."""
    data = (manifest.get("files") or {}).get("data") or {}
    if data.get("format") == "jsonl":
        return {files.data: data.get("sha256")}
    if data.get("format") in ("parquet", "trl"):
        return {os.path.join(files.shards, s["file"]): s.get("sha256") for s in data.get("shards") or []}
    if isinstance(data.get("path"), str):  # another writer's data, where it was written
        return {data["path"]: data.get("sha256")}
    return {}


def modified(files: DatasetFiles, manifest: dict) -> list[str]:
    """The data files that are not what the manifest records: another sha256, or a shard it does not list."""
    listed = data_files(files, manifest)
    changed = [path for path, sha in listed.items() if sha and (not os.path.isfile(path) or sha256_file(path) != sha)]
    if os.path.isdir(files.shards) and any(path.startswith(files.shards + os.sep) for path in listed):
        changed += sorted(path for path in _existing(files.shards) if path not in listed)
    return changed


def _existing(path: str) -> Iterator[str]:
    """``path`` when it is a file (or a link), every file under it when it is a folder; nothing when absent."""
    if os.path.isdir(path) and not os.path.islink(path):
        for folder, _, names in os.walk(path):
            for name in sorted(names):
                yield os.path.join(folder, name)
    elif os.path.lexists(path):
        yield path


def check_replace(files: DatasetFiles, paths: Iterable[str], overwrite: bool) -> None:
    """Refuse, before anything is written, to replace a file of ``paths`` (a folder: any file in it)
    that seva-plugin did not write, or (without ``overwrite``) one changed since it wrote it."""
    found: Claims | None = None
    for path in paths:
        for file in _existing(path):
            found = found or claims(files)
            if not found.covers(file):
                raise ConfigError(
                    f"{file} exists and seva-plugin did not write it (no manifest of dataset '{files.name}' lists it), so it is never replaced, "
                    "with overwrite or without. Move it away, or choose another dataset name."
                )
            recorded = found.files.get(file)
            if recorded and not overwrite and sha256_file(file) != recorded:
                raise ConfigError(
                    f"{file} was changed since seva-plugin wrote it (its sha256 is not the one {os.path.basename(files.manifest)} records). "
                    f"To replace it, set {OVERWRITE}; or move it away."
                )


@contextlib.contextmanager
def writing(files: DatasetFiles, fingerprint: str) -> Iterator[None]:
    """Mark the dataset's outputs as being replaced until its manifest is written (``claims``)."""
    with write_errors(files.writing):
        os.makedirs(files.work_dir, exist_ok=True)
    atomic_write_json(files.writing, {"pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S"), "fingerprint": fingerprint})
    yield
    with contextlib.suppress(FileNotFoundError):
        os.unlink(files.writing)

"""``seva export DATA_DIR --name NAME --to trl|parquet|jsonl --out DIR``: convert a finished build
without generating anything again.

The build must be finished (``finished_build.py`` says exactly what that means). Its pairs are read
back from its data (``plugins/writers/readback.py``) and written by the target's writer into DIR:

- ``jsonl``: writer ``llamafactory``: ``NAME.jsonl`` with image paths (embedded images are written
  out as files into ``NAME_images/``) and its ``dataset_info.json`` entry;
- ``parquet``: writer ``llamafactory`` with ``format: parquet``: the Hub-ready ``NAME/`` folder with
  embedded images and a dataset card, and its ``dataset_info.json`` entry;
- ``trl``: writer ``trl``: the Hub-ready ``NAME/`` folder in TRL's vision preference format.

DIR gets a manifest that keeps the build's config, fingerprint, versions and counts and adds an
``exports`` step. A pair whose image cannot be read now (moved, deleted, corrupt) is left out and
listed with its id and the reason in ``DIR/NAME.export_rejects.jsonl``; the export goes on.

``--exclude FILE`` leaves out the pairs whose ids FILE lists (``seva inspect``'s download, a JSON
list of ids, or a text file with one id a line); the step records the file, its sha256, the ids and
how many pairs they removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import seva_plugin
from seva_plugin.commands.finished_build import FinishedBuild, finished_build
from seva_plugin.errors import ConfigError, RecordError, show
from seva_plugin.pipeline.dataset_files import DatasetFiles
from seva_plugin.pipeline.files import atomic_write_json, atomic_write_lines, check_writable, output_lock
from seva_plugin.pipeline.manifest import checked_write
from seva_plugin.pipeline.records import Reject
from seva_plugin.plugins.writers.embedding import check_image
from seva_plugin.plugins.writers.readback import iter_pairs
from seva_plugin.registry import get_registry

# target -> (writer, its output keys)
TARGETS: dict[str, tuple[str, dict]] = {
    "jsonl": ("llamafactory", {"format": "jsonl"}),
    "parquet": ("llamafactory", {"format": "parquet"}),
    "trl": ("trl", {}),
}


@dataclass
class ExportResult:
    name: str
    source: str
    target: str
    data_path: str
    manifest_path: str
    rejects_path: str
    exported: int
    left_out: dict[str, int] = field(default_factory=dict)
    excluded: dict[str, Any] | None = None  # the manifest's record of --exclude

    def summary(self) -> str:
        left = ", ".join(f"{k} {v}" for k, v in sorted(self.left_out.items()))
        lines = [f"{self.exported} pair{'' if self.exported == 1 else 's'} exported ({self.source} -> {self.target}) to {self.data_path}"]
        lines.append(f"left out: {left} (see {self.rejects_path})" if left else "left out: none")
        if self.excluded is not None:
            unmatched = len(self.excluded["unmatched"])
            lines.append(
                f"excluded: {self.excluded['pairs']} pair(s) listed in {self.excluded['file']}"
                + (f" ({unmatched} of its ids matched no pair)" if unmatched else "")
            )
        lines.append(f"manifest: {self.manifest_path}")
        return "\n".join(lines)


def read_exclusion_list(path: str) -> tuple[list[str], str]:
    """The ids a ``--exclude`` file lists, and its sha256: ``seva inspect``'s download
    (``{"exclude": [ids]}``), a JSON list of ids, or text with one id a line (``#`` comments, blank
    lines ignored)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ConfigError(f"--exclude {path}: cannot read it ({exc.strerror or exc}).") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"--exclude {path} is not UTF-8 text; give a JSON list of pair ids or one id a line.") from None
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        try:
            parsed = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--exclude {path} looks like JSON but is not ({exc}).") from None
        ids = parsed.get("exclude") if isinstance(parsed, dict) else parsed
        if not isinstance(ids, list) or not all(isinstance(i, str | int) and not isinstance(i, bool) for i in ids):
            raise ConfigError(f'--exclude {path}: expected a list of pair ids (or seva inspect\'s {{"exclude": [...]}}), got {show(parsed, 120)}.')
        return [str(i) for i in ids], hashlib.sha256(data).hexdigest()
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")], hashlib.sha256(data).hexdigest()


def _readable(items: Iterable[dict | Reject], rejects: list[dict], check_images: bool, excluded: Counter | None = None) -> Iterator[dict]:
    """Pairs that can be exported and are not ``excluded`` (its ids counted as they match); the rest go
    to ``rejects`` with their id and reason."""
    for item in items:
        if isinstance(item, Reject):
            rejects.append({"id": item.id, "reason": item.reason, "code": item.code})
            continue
        if excluded is not None and str(item["id"]) in excluded:
            excluded[str(item["id"])] += 1
            continue
        if check_images:  # writers that embed images check them as they read them
            try:
                for image in item["images"]:
                    check_image(image)
            except RecordError as exc:
                rejects.append({"id": item["id"], "reason": str(exc), "code": exc.code})
                continue
        yield item


def _writer_params(target: str, build: FinishedBuild, shard_size: int | None, licence: str | None) -> dict:
    params = dict(TARGETS[target][1])
    if target == "jsonl":
        if shard_size is not None or licence is not None:
            raise ConfigError("--shard-size and --license apply to the Parquet targets (parquet, trl), not to jsonl.")
        return params
    if shard_size is not None:
        params["shard_size"] = shard_size
    params["license"] = licence or build.manifest.get("config", {}).get("output", {}).get("license") or "unknown"
    return params


def _manifest(build: FinishedBuild, name: str, target: str, files: dict, left_out: Counter, excluded: dict[str, Any] | None) -> dict:
    manifest = dict(build.manifest)
    counts = dict(manifest.get("counts", {}))
    counts["kept"] = files["data"]["records"]
    if left_out:
        counts["skipped_at_export"] = dict(left_out)
    if excluded is not None:
        counts["excluded_at_export"] = excluded["pairs"]
    with open(build.files.manifest, "rb") as fh:
        source_sha = hashlib.sha256(fh.read()).hexdigest()
    step = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
        "seva_plugin": seva_plugin.__version__,
        "from": build.files.dataset_dir,
        "from_name": build.files.name,
        "from_format": build.layout,
        "from_manifest_sha256": source_sha,
        "format": target,
        "exported": files["data"]["records"],
        "left_out": dict(left_out),
        **({"excluded": excluded} if excluded is not None else {}),
    }
    return {**manifest, "name": name, "counts": counts, "files": files, "exports": [*manifest.get("exports", []), step]}


def export(
    data_dir: str,
    name: str,
    target: str,
    out_dir: str,
    *,
    out_name: str | None = None,
    overwrite: bool = False,
    shard_size: int | None = None,
    licence: str | None = None,
    exclude: str | None = None,
) -> ExportResult:
    if target not in TARGETS:
        raise ConfigError(f"--to must be one of {', '.join(TARGETS)}, got {show(target)}.")
    source, out = DatasetFiles(data_dir, name), DatasetFiles(out_dir, out_name or name)
    if out == source:
        raise ConfigError(
            f"exporting '{name}' into its own folder {out.dataset_dir} under the same name would replace the build it reads; use another --out or --out-name."
        )
    # Hold the source's build lock (no build may start or run while it is read), then the output's:
    # a refused export leaves nothing behind.
    with _lock_if_built(source):
        build = finished_build(source.dataset_dir, name)
        with output_lock(out.lock, f"{out.dataset_dir} ({out.name})"):
            return _export(build, out, target, overwrite, shard_size, licence, exclude)


def _lock_if_built(files: DatasetFiles):
    """The build lock of a dataset a build made here; nothing for a copied or read-only one."""
    if not os.path.exists(files.lock):
        return contextlib.nullcontext()
    return output_lock(files.lock, f"{files.dataset_dir} ({files.name})")


def _export(
    build: FinishedBuild, out: DatasetFiles, target: str, overwrite: bool, shard_size: int | None, licence: str | None, exclude: str | None
) -> ExportResult:
    name = build.files.name
    listed, listed_sha = read_exclusion_list(exclude) if exclude is not None else ([], "")
    check_writable(out.dataset_dir)
    if os.path.exists(out.manifest) and not overwrite:
        raise ConfigError(
            f"{out.manifest} exists: {out.dataset_dir} already holds a dataset '{out.name}'. Pass --overwrite to replace it, or choose another --out "
            "or --out-name."
        )
    writer_name, _ = TARGETS[target]
    params = _writer_params(target, build, shard_size, licence)
    writer = get_registry().get("writer", writer_name).build(params, f"export --to {target}", dataset_dir=out.dataset_dir, dataset_name=out.name)
    writer.prepare(overwrite)

    rejects: list[dict] = []
    matched: Counter | None = Counter(dict.fromkeys(listed, 0)) if exclude is not None else None
    pairs = _readable(iter_pairs(build.files.dataset_dir, name, build.layout), rejects, target == "jsonl", matched)
    written = checked_write(writer, writer.write(pairs, overwrite))
    files = written.manifest_files()
    rejects += written.skipped
    atomic_write_lines(_rejects_path(out), (json.dumps(r, ensure_ascii=False) + "\n" for r in rejects))
    left_out = Counter(r["code"] for r in rejects)
    excluded = None
    if matched is not None and exclude is not None:
        ids = sorted(matched)
        unmatched = [i for i in ids if not matched[i]]
        excluded = {"file": os.path.abspath(exclude), "sha256": listed_sha, "ids": ids, "pairs": sum(matched.values()), "unmatched": unmatched}
    manifest = _manifest(build, out.name, target, files, left_out, excluded)
    atomic_write_json(out.manifest, manifest)
    writer.finish(manifest)
    return ExportResult(out.name, build.layout, target, written.path, out.manifest, _rejects_path(out), written.records, dict(left_out), excluded)


def _rejects_path(files: DatasetFiles) -> str:
    return os.path.join(files.dataset_dir, f"{files.name}.export_rejects.jsonl")

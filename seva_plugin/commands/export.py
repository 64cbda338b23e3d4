"""``seva export DATA_DIR --name NAME --to trl|parquet|jsonl --out DIR``: convert a finished build
without generating anything again.

The build must be finished (``finished_build.py`` says exactly what that means). Its pairs are read
back from its data (``plugins/writers/readback.py``) and written by the target's writer into DIR:

- ``jsonl``: writer ``llamafactory``: ``NAME.jsonl`` with image paths (embedded images are written
  out as files into ``NAME.images/``) and its ``dataset_info.json`` entry;
- ``parquet``: writer ``llamafactory`` with ``format: parquet``: the Hub-ready ``NAME/`` folder with
  embedded images and a dataset card, and its ``dataset_info.json`` entry;
- ``trl``: writer ``trl``: the Hub-ready ``NAME/`` folder in TRL's vision preference format.

DIR gets a manifest that keeps the build's config, fingerprint, versions and counts, adds an
``exports`` step and lists the files the export wrote: ``--overwrite`` replaces those and nothing
else (``pipeline/claims.py``), so a file of the user's in DIR (in ``NAME/data/`` too) stops the
export. A pair whose image cannot be read now (moved, deleted, corrupt) is left out and listed
with its id and the reason in ``DIR/NAME.export_rejects.jsonl``; the export goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import seva_plugin
from seva_plugin.commands.finished_build import FinishedBuild, finished_build
from seva_plugin.errors import ConfigError, RecordError, show
from seva_plugin.pipeline.claims import writing
from seva_plugin.pipeline.dataset_files import DatasetFiles
from seva_plugin.pipeline.files import WriteError, atomic_write_json, atomic_write_lines, check_writable, output_lock, reading_lock
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

    def summary(self) -> str:
        left = ", ".join(f"{k} {v}" for k, v in sorted(self.left_out.items()))
        lines = [f"{self.exported} pair{'' if self.exported == 1 else 's'} exported ({self.source} -> {self.target}) to {self.data_path}"]
        lines.append(f"left out: {left} (see {self.rejects_path})" if left else "left out: none")
        lines.append(f"manifest: {self.manifest_path}")
        return "\n".join(lines)


def _readable(items: Iterable[dict | Reject], rejects: list[dict], check_images: bool) -> Iterator[dict]:
    """Pairs that can be exported; the rest go to ``rejects`` with their id and reason."""
    for item in items:
        if isinstance(item, Reject):
            rejects.append({"id": item.id, "reason": item.reason, "code": item.code})
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


def _manifest(build: FinishedBuild, name: str, target: str, files: dict, left_out: Counter) -> dict:
    manifest = dict(build.manifest)
    counts = dict(manifest.get("counts", {}))
    counts["kept"] = files["data"]["records"]
    if left_out:
        counts["skipped_at_export"] = dict(left_out)
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
    }
    if build.modified:  # exported with --allow-modified
        step["modified"] = build.modified
    return {**manifest, "name": name, "counts": counts, "files": files, "exports": [*manifest.get("exports", []), step]}


def export(
    data_dir: str,
    name: str,
    target: str,
    out_dir: str,
    *,
    out_name: str | None = None,
    overwrite: bool = False,
    allow_modified: bool = False,
    shard_size: int | None = None,
    licence: str | None = None,
) -> ExportResult:
    if target not in TARGETS:
        raise ConfigError(f"--to must be one of {', '.join(TARGETS)}, got {show(target)}.")
    source, out = DatasetFiles(data_dir, name), DatasetFiles(out_dir, out_name or name)
    if out.name == source.name and os.path.realpath(out.dataset_dir) == os.path.realpath(source.dataset_dir):  # a symlinked --out too
        raise ConfigError(
            f"exporting '{name}' into its own folder {out.dataset_dir} under the same name would replace the build it reads; use another --out or --out-name."
        )
    # Share the source's build lock (no build may start or run while it is read), then hold the
    # output's: a refused export leaves nothing behind.
    with reading_lock(source.lock, f"{source.dataset_dir} ({source.name})"):
        build = finished_build(source.dataset_dir, name, allow_modified)
        if build.modified and not allow_modified:
            first = build.modified[0]
            raise ConfigError(
                f"{first} is not the data its build wrote (its sha256 differs from {os.path.basename(build.files.manifest)})"
                + (f", nor are {len(build.modified) - 1} more file(s)" if len(build.modified) > 1 else "")
                + ": exporting it would pass it off as that build's. Rebuild it, or pass --allow-modified to export it as it is "
                "(the new manifest records which files were modified)."
            )
        try:
            with output_lock(out.lock, f"{out.dataset_dir} ({out.name})"):
                return _export(build, out, target, overwrite, shard_size, licence)
        except WriteError as exc:  # a build's advice ("rerun to resume") does not fit an export
            raise WriteError(
                f"seva export could not write {exc.what}: {exc.problem}. Free the problem and run the export again (it writes its files anew).",
                exc.what,
                exc.problem,
            ) from None


def _export(build: FinishedBuild, out: DatasetFiles, target: str, overwrite: bool, shard_size: int | None, licence: str | None) -> ExportResult:
    name = build.files.name
    check_writable(out.dataset_dir)
    if os.path.exists(out.manifest) and not overwrite:
        raise ConfigError(
            f"{out.manifest} exists: {out.dataset_dir} already holds a dataset '{out.name}'. Pass --overwrite to replace it, or choose another --out "
            "or --out-name."
        )
    out.check_replace([out.manifest, out.export_rejects], overwrite)  # only what an export wrote (the writer checks its data)
    writer_name, _ = TARGETS[target]
    params = _writer_params(target, build, shard_size, licence)
    writer = get_registry().get("writer", writer_name).build(params, f"export --to {target}", dataset_dir=out.dataset_dir, dataset_name=out.name)
    writer.prepare(overwrite)

    rejects: list[dict] = []
    with writing(out, build.manifest.get("fingerprint", "")):  # until the manifest lists them, the files being replaced are marked as ours
        files = writer.write(_readable(iter_pairs(build.files.dataset_dir, name, build.layout), rejects, check_images=target == "jsonl"), overwrite)
        rejects += files["data"].get("skipped", [])
        sha = atomic_write_lines(out.export_rejects, (json.dumps(r, ensure_ascii=False) + "\n" for r in rejects))
        files["export_rejects"] = {"path": out.export_rejects, "sha256": sha}
        left_out = Counter(r["code"] for r in rejects)
        manifest = _manifest(build, out.name, target, files, left_out)
        atomic_write_json(out.manifest, manifest)
    writer.finish(manifest)
    return ExportResult(out.name, build.layout, target, files["data"]["path"], out.manifest, out.export_rejects, files["data"]["records"], dict(left_out))

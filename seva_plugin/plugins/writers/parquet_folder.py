"""A Hub-ready dataset folder: ``README.md`` (the dataset card) and shards named as ``push_to_hub`` names them (``data/train-00000-of-00002.parquet``, ...).

The layout ``push_to_hub`` writes, so ``load_dataset(folder)`` reads it as it is and
``huggingface-cli upload REPO folder --repo-type dataset`` publishes it. LLaMA-Factory is pointed at
``data/`` (the dataset_info.json entry names that folder): it loads every file of a folder and
needs them all of one type, which is why the card sits one level up.

Rows are written a row group at a time (``ROW_GROUP`` rows, the ``datasets`` default for image
sets), so memory holds one row group's images, never the whole set. Shards of ``shard_size`` rows
are written into a hidden temporary folder that replaces ``data/`` only once every shard is
complete: a killed write leaves the previous ``data/`` (or none), never a partial one.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any

import seva_plugin
from seva_plugin.errors import ConfigError, RecordError, show
from seva_plugin.pipeline.dataset_files import DatasetFiles
from seva_plugin.pipeline.files import atomic_write_lines, fsync_path, sha256_file, umask, write_errors
from seva_plugin.plugins.writers.embedding import embed

if TYPE_CHECKING:
    from datasets import Features

ROW_GROUP = 100  # rows per Parquet row group: datasets' PARQUET_ROW_GROUP_SIZE_FOR_IMAGE_DATASETS
DATA = "data"
SPLIT = "train"
CARD = "README.md"
# Parquet schema metadata naming the writer (which files a build may replace is decided by its manifest: pipeline/claims.py).
OWNER_KEY = b"seva_plugin"


Row = dict[str, Any]


def embedded_rows(pairs: Iterable[Row], to_row: Callable[[Row, list[Any]], Row], skipped: list[Row], counts: Counter[str] | None = None) -> Iterator[Row]:
    """``to_row(pair, images)`` for each pair, its images embedded (``counts["normalised"]``: those embedded
    as the normalised PNG). A pair with an image that cannot be read is added to ``skipped`` (id, reason,
    code) and the others go on."""
    for pair in pairs:
        try:
            embedded = [embed(image) for image in pair["images"]]
        except RecordError as exc:
            skipped.append({"id": pair["id"], "reason": str(exc), "code": exc.code})
            continue
        if counts is not None:
            counts["normalised"] += sum(normalised for _, normalised in embedded)
        yield to_row(pair, [value for value, _ in embedded])


class ParquetFolder:
    def __init__(self, root: str, features: Features, shard_size: int):
        if not isinstance(shard_size, int) or isinstance(shard_size, bool) or shard_size < 1:
            raise ConfigError(f"output.shard_size must be a positive number of pairs per Parquet file, got {show(shard_size)}.")
        self.root = root
        self.features = features
        self.shard_size = shard_size
        schema = features.arrow_schema
        self.schema = schema.with_metadata({**(schema.metadata or {}), OWNER_KEY: json.dumps({"version": seva_plugin.__version__})})

    @property
    def data_dir(self) -> str:
        return os.path.join(self.root, DATA)

    @property
    def card_path(self) -> str:
        return os.path.join(self.root, CARD)

    def shards(self) -> list[str]:
        return sorted(glob.glob(os.path.join(self.data_dir, "*.parquet")))

    def check_target(self, overwrite: bool) -> None:
        """Replace only what seva-plugin wrote here: its card and shards (a user's file in ``data/`` stops it,
        as LLaMA-Factory would load it with the shards); a file where the folder should be too."""
        files = DatasetFiles(os.path.dirname(self.root), os.path.basename(self.root))
        if os.path.lexists(self.root) and not os.path.isdir(self.root):
            files.check_replace([self.root], overwrite)
        files.check_replace([self.card_path, self.data_dir], overwrite)

    def write(self, rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
        """Write ``rows`` as shards, replace ``data/`` with them, and describe what was written."""
        with write_errors(self.root):
            os.makedirs(self.root, exist_ok=True)
            self._remove_leftovers()
            tmp = tempfile.mkdtemp(dir=self.root, prefix=f".{DATA}.tmp-")
            os.chmod(tmp, 0o777 & ~umask())  # what os.makedirs would give data/, not mkdtemp's 0700
            try:
                counts = self._write_parts(iter(rows), tmp)
                shards = self._name_parts(tmp, counts)
                self._swap_in(tmp)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return {
            "path": self.data_dir,
            "records": sum(counts),
            "bytes": sum(s["bytes"] for s in shards),
            "shard_size": self.shard_size,
            "shards": shards,
        }

    def write_card(self, text: str) -> str:
        atomic_write_lines(self.card_path, [text])
        return self.card_path

    # -- steps ---------------------------------------------------------------------------------
    def _remove_leftovers(self) -> None:
        """Temporary folders of a write that was killed."""
        for path in glob.glob(os.path.join(self.root, f".{DATA}.tmp-*")) + glob.glob(os.path.join(self.root, f".{DATA}.old-*")):
            shutil.rmtree(path, ignore_errors=True)

    def _write_parts(self, rows: Iterator[dict[str, Any]], folder: str) -> list[int]:
        """Stream ``rows`` into ``part-NNNNN.parquet`` files of ``shard_size`` rows; return their row counts.
        No rows still make one (empty) file, so the folder stays loadable."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        group = min(ROW_GROUP, self.shard_size)
        counts: list[int] = []
        batch = list(islice(rows, group))
        while batch or not counts:
            path = os.path.join(folder, f"part-{len(counts):05d}.parquet")
            written = 0
            with pq.ParquetWriter(path, self.schema) as writer:
                while batch:
                    writer.write_table(pa.Table.from_pylist(batch, schema=self.schema))
                    written += len(batch)
                    batch = list(islice(rows, min(group, self.shard_size - written)))
            counts.append(written)
            fsync_path(path)
            batch = list(islice(rows, group)) if written == self.shard_size else []
        return counts

    def _name_parts(self, folder: str, counts: list[int]) -> list[dict[str, Any]]:
        shards = []
        for index, records in enumerate(counts):
            name = f"{SPLIT}-{index:05d}-of-{len(counts):05d}.parquet"
            path = os.path.join(folder, name)
            os.rename(os.path.join(folder, f"part-{index:05d}.parquet"), path)
            shards.append({"file": name, "records": records, "bytes": os.path.getsize(path), "sha256": sha256_file(path)})
        fsync_path(folder)
        return shards

    def _swap_in(self, folder: str) -> None:
        old = os.path.join(self.root, f".{DATA}.old-{os.getpid()}")
        if os.path.exists(self.data_dir):
            os.rename(self.data_dir, old)
        os.rename(folder, self.data_dir)
        fsync_path(self.root)
        shutil.rmtree(old, ignore_errors=True)

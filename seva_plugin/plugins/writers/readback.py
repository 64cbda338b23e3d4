"""Reading back the pairs a writer stored, in any of the three layouts, as the pairs writers take.

``seva export`` converts a finished build with it, without generating anything again.

- ``jsonl``: ``DATASET_DIR/NAME.jsonl`` (writer ``llamafactory``), image paths relative to the
  dataset_dir or absolute; they come back absolute.
- ``parquet``: ``DATASET_DIR/NAME/data/*.parquet`` (``llamafactory`` with ``format: parquet``).
- ``trl``: ``DATASET_DIR/NAME/data/*.parquet`` (writer ``trl``).

Parquet images come back embedded (``{"bytes", "path"}``). A record that cannot be read comes out
as a ``Reject`` naming the file, the line or row, and why; reading goes on. Shards are read a row
group at a time, so memory holds one row group's images.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterator
from typing import Any

from seva_plugin.errors import ConfigError
from seva_plugin.pipeline.records import Reject
from seva_plugin.plugins.sources.common import iter_json_rows, resolve
from seva_plugin.plugins.writers.parquet_folder import DATA, ROW_GROUP
from seva_plugin.plugins.writers.rows import pair_from_sharegpt, pair_from_trl

LAYOUTS = ("jsonl", "parquet", "trl")


def layout_of(manifest: dict[str, Any]) -> str:
    """The layout a build's data is in: the manifest's ``files.data.format``, else its writer config
    (manifests from before formats existed are JSONL)."""
    stated = manifest.get("files", {}).get("data", {}).get("format")
    if stated in LAYOUTS:
        return str(stated)
    output = manifest.get("config", {}).get("output", {})
    writer = output.get("writer", "llamafactory")
    if writer == "trl":
        return "trl"
    if writer == "llamafactory" and output.get("format", "jsonl") in LAYOUTS:
        return str(output.get("format", "jsonl"))
    raise ConfigError(f"the data was written by writer '{writer}', which seva export cannot read (it reads {', '.join(LAYOUTS)}).")


def data_location(dataset_dir: str, name: str, layout: str) -> str:
    """The data file (jsonl) or shard folder (parquet, trl) of dataset ``name``."""
    return os.path.join(dataset_dir, f"{name}.jsonl") if layout == "jsonl" else os.path.join(dataset_dir, name, DATA)


def _shards(folder: str) -> list[str]:
    return sorted(glob.glob(os.path.join(folder, "*.parquet")))


def count_records(location: str, layout: str) -> int | None:
    """How many records the data holds; None when it is missing."""
    if layout == "jsonl":
        if not os.path.isfile(location):
            return None
        with open(location, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    shards = _shards(location)
    if not shards:
        return None
    import pyarrow.parquet as pq

    return int(sum(pq.ParquetFile(path).metadata.num_rows for path in shards))


def iter_pairs(dataset_dir: str, name: str, layout: str) -> Iterator[dict[str, Any] | Reject]:
    location = data_location(dataset_dir, name, layout)
    if layout == "jsonl":
        yield from _jsonl_pairs(location, dataset_dir)
    else:
        yield from _parquet_pairs(location, pair_from_trl if layout == "trl" else pair_from_sharegpt)


def _jsonl_pairs(path: str, dataset_dir: str) -> Iterator[dict[str, Any] | Reject]:
    where = os.path.basename(path)
    for lineno, row in iter_json_rows(path):
        if isinstance(row, Reject):
            yield row
            continue
        try:
            pair = pair_from_sharegpt(row)
            pair["images"] = [resolve(p, dataset_dir) if isinstance(p, str) else p for p in pair["images"]]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            yield Reject(str(row.get("id", f"line-{lineno}")), f"{where} line {lineno} is not a seva pair record ({type(exc).__name__}: {exc})", "bad_record")
            continue
        yield pair


def _parquet_pairs(folder: str, to_pair: Callable[[dict[str, Any]], dict[str, Any]]) -> Iterator[dict[str, Any] | Reject]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    for path in _shards(folder):
        where = os.path.relpath(path, os.path.dirname(os.path.dirname(folder)))
        try:
            batches = pq.ParquetFile(path).iter_batches(batch_size=ROW_GROUP)
            row_index = 0
            for batch in batches:
                for row in batch.to_pylist():
                    row_index += 1
                    try:
                        yield to_pair(row)
                    except (KeyError, TypeError, ValueError, AttributeError) as exc:
                        yield Reject(
                            str(row.get("id") or f"{where}-row-{row_index}"),
                            f"{where} row {row_index} is not a seva pair ({type(exc).__name__}: {exc})",
                            "bad_record",
                        )
        except (OSError, pa.ArrowException) as exc:
            raise ConfigError(f"cannot read {path}: {exc}. The shard is damaged; rebuild the dataset (or export it again from its source).") from None

"""How a dataset stores its images, which decides whether LLaMA-Factory can mix it with another.

LLaMA-Factory aligns the features of the sets it mixes. Image *paths* (strings, every JSONL) and
*embedded* images (``Image()`` values: hub sets, Parquet with ``{"bytes", "path"}`` structs) do not
align: "The features can't be aligned because the key _images ...". Told from a Parquet file's
schema (nothing else is read) or a text format's extension (JSON, JSONL and CSV only hold strings).
"""

from __future__ import annotations

from typing import Literal

Storage = Literal["paths", "embedded"]


def _arrow_storage(path: str, column: str) -> Storage | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException):
        return None
    if column not in schema.names:
        return None
    kind = schema.field(column).type
    while pa.types.is_list(kind) or pa.types.is_large_list(kind):
        kind = kind.value_type
    if pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0:
        return "embedded"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "paths"
    return None


def image_storage(path: str, column: str) -> Storage | None:
    """``paths`` or ``embedded`` for the ``column`` of a local data file; None when it cannot be told."""
    if path.endswith(".parquet"):
        return _arrow_storage(path, column)
    if path.endswith((".json", ".jsonl", ".csv")):
        return "paths"  # text formats hold strings: LLaMA-Factory loads them as string features
    return None

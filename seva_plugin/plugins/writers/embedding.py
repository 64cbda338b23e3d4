"""A pair's images for a writer: embedded as bytes (Parquet) or as files (JSONL).

An image is a file path (a build's pairs, a JSONL export) or an embedded value as ``datasets``
stores an ``Image()``: ``{"bytes": ..., "path": file name}`` (a Parquet export). Embedding keeps the
file's bytes unchanged, so a Parquet set trains on exactly the pixels its JSONL twin does. A path is
checked the way the build checks its inputs (``load_rgb``) first: a missing or broken file is a
``RecordError`` for that one pair, never a crash.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from typing import Any

from seva_plugin.errors import RecordError
from seva_plugin.pipeline.files import atomic_write_bytes, write_errors
from seva_plugin.pipeline.images import load_rgb


def check_image(image: str | dict[str, Any]) -> None:
    """Raise RecordError when ``image`` cannot be opened as an image."""
    if isinstance(image, str):
        load_rgb(image)
        return
    data = image.get("bytes") if isinstance(image, dict) else None
    if not data:
        raise RecordError(f"embedded image has no bytes: {image!r:.120}", "no_image")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except UnidentifiedImageError:
        raise RecordError("embedded image is not an image (format not recognised)", "not_an_image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise RecordError(f"embedded image cannot be decoded ({exc})", "undecodable") from None


def embed(image: str | dict[str, Any]) -> dict[str, Any]:
    """``image`` as an embedded ``Image()`` value: the file's bytes and its file name."""
    check_image(image)
    if isinstance(image, dict):
        return {"bytes": image["bytes"], "path": image.get("path")}
    with open(image, "rb") as fh:
        return {"bytes": fh.read(), "path": os.path.basename(image)}


def _extension(data: bytes) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        fmt = (img.format or "png").lower()
    return {"jpeg": "jpg", "tiff": "tif"}.get(fmt, fmt)


def file_stem(record_id: str, index: int) -> str:
    """A file name for a record's ``index``-th image: readable, and unique even when ids differ only in
    characters a file name cannot hold."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", record_id)[:80].strip("._") or "record"
    digest = hashlib.sha1(record_id.encode("utf-8")).hexdigest()[:8]
    return f"{safe}-{digest}_{index}"


def save_embedded(image: dict[str, Any], folder: str, stem: str) -> str:
    """Write an embedded image's bytes to ``folder/stem.<ext>`` (atomically); return the path."""
    check_image(image)
    path = os.path.join(folder, f"{stem}.{_extension(image['bytes'])}")
    with write_errors(path):
        os.makedirs(folder, exist_ok=True)
    atomic_write_bytes(path, [image["bytes"]])
    return path

"""A pair's images for a writer: embedded as bytes (Parquet) or as files (JSONL), holding the pixels the
model answered about.

An image is a file path (a build's pairs, a JSONL export) or an embedded value as ``datasets``
stores an ``Image()``: ``{"bytes": ..., "path": file name}`` (a Parquet export). It is checked the
way the build checks its inputs (``pipeline.images``) first: a missing or broken file is a
``RecordError`` for that one pair, never a crash. Where LLaMA-Factory would load the stored image
otherwise than the build saw it (``images.loads_as_is``), the normalised image is written as a
PNG instead. Embedding keeps a file's bytes only for a PNG that loads as it is: LLaMA-Factory's
``dataset.map`` re-encodes an embedded JPEG at quality 75, and ``datasets`` turns an image by its
EXIF orientation, so other bytes would train on other pixels.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from typing import Any

from seva_plugin.errors import RecordError
from seva_plugin.pipeline.files import atomic_write_bytes, write_errors
from seva_plugin.pipeline.images import load_image, loads_as_is, png_bytes


def _source(image: str | dict[str, Any]) -> str | bytes:
    if isinstance(image, str):
        return image
    data: bytes | None = image.get("bytes") if isinstance(image, dict) else None
    if not data:
        raise RecordError(f"embedded image has no bytes: {image!r:.120}", "no_image")
    return data


def check_image(image: str | dict[str, Any]) -> None:
    """Raise RecordError when ``image`` cannot be opened as an image."""
    load_image(_source(image))


def embed(image: str | dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``image`` as an embedded ``Image()`` value, and whether it holds the normalised image (a PNG)
    rather than the stored bytes."""
    source = _source(image)
    img = load_image(source)
    name = os.path.basename(image) if isinstance(image, str) else image.get("path")
    if img.format == "PNG" and loads_as_is(img):
        if isinstance(source, str):
            with open(source, "rb") as fh:
                source = fh.read()
        return {"bytes": source, "path": name}, False
    return {"bytes": png_bytes(img), "path": f"{os.path.splitext(name or 'image')[0]}.png"}, True


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


def path_stem(path: str) -> str:
    """A file name for the normalised copy of the image at ``path``: one per source file, however many records use it."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(os.path.basename(path))[0])[:60].strip("._") or "image"
    return f"{safe}-{hashlib.sha1(os.path.abspath(path).encode('utf-8', 'backslashreplace')).hexdigest()[:12]}"


def training_file(image: str | dict[str, Any], folder: str, stem: str) -> tuple[str, bool]:
    """A file LLaMA-Factory trains on as the build saw ``image``, and whether it was written into ``folder``:
    a path that loads as it is stays; else (an embedded image, an image to normalise) ``folder/stem.<ext>``
    holds the stored bytes when they load as they are, or the normalised image as a PNG."""
    source = _source(image)
    img = load_image(source)
    if loads_as_is(img):
        if isinstance(source, str):
            return source, False
        data, ext = source, _extension(source)
    else:
        data, ext = png_bytes(img), "png"
    path = os.path.join(folder, f"{stem}.{ext}")
    with write_errors(path):
        os.makedirs(folder, exist_ok=True)
    atomic_write_bytes(path, [data])
    return path, True

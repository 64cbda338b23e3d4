"""Loading user images defensively: every failure becomes a RecordError with a readable reason.

A build sees every image normalised (:func:`load_rgb`): upright by its EXIF orientation, 16-bit
values rescaled (not clipped), transparency composited on white. LLaMA-Factory 0.9.5 trains on a
file as ``Image.open(path)``, resized, then ``convert("RGB")`` (``mm_plugin._preprocess_image``), so
where that differs (:func:`loads_as_is` is false) the writers write the normalised image for
training (:func:`png_bytes`), and the model answers about the pixels training reads.
"""

from __future__ import annotations

import io
import os
import warnings

from seva_plugin.errors import RecordError

# Above this a file is treated as a decompression bomb (Pillow's own default is 89.5M pixels).
MAX_PIXELS = 64_000_000
ORIENTATION = 0x0112  # the EXIF tag


def load_image(source: str | bytes, max_pixels: int = MAX_PIXELS):
    """``source`` (a path, or an image file's bytes) decoded as it is stored, or RecordError saying why not."""
    from PIL import Image, UnidentifiedImageError

    where = source if isinstance(source, str) else "an embedded image"
    if isinstance(source, str):
        if not source:
            raise RecordError("record has an empty image path", "no_image")
        if not os.path.exists(source):
            raise RecordError(f"image file not found: {source}", "missing_file")
        if os.path.isdir(source):
            raise RecordError(f"image path is a directory: {source}", "missing_file")
    if (os.path.getsize(source) if isinstance(source, str) else len(source)) == 0:
        raise RecordError(f"image file is empty (0 bytes): {where}", "empty_file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source if isinstance(source, str) else io.BytesIO(source)) as img:  # the file is closed, the pixels kept
                w, h = img.size
                if w * h > max_pixels:
                    raise RecordError(f"image too large: {w}x{h} pixels exceeds the limit of {max_pixels} (possible decompression bomb): {where}", "too_large")
                img.load()
                img.getexif()  # read while the file is open
    except RecordError:
        raise
    except UnidentifiedImageError:
        raise RecordError(f"not an image (format not recognised): {where}", "not_an_image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise RecordError(f"image too large (possible decompression bomb): {where}: {exc}", "too_large") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise RecordError(f"image cannot be decoded, truncated or corrupt ({exc}): {where}", "undecodable") from None
    return img


def normalise(img):
    """``img`` as a build sees it: upright, RGB, 16-bit rescaled, transparency on white."""
    import numpy as np
    from PIL import Image, ImageOps

    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16/32-bit: rescale, don't clip to white
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.astype(np.uint8))
    if img.mode in ("P", "PA", "LA", "RGBA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        img = Image.new("RGB", rgba.size, (255, 255, 255))
        img.paste(rgba, mask=rgba.getchannel("A"))
    return img.convert("RGB")


def load_rgb(source: str | bytes, max_pixels: int = MAX_PIXELS):
    """Open ``source`` as an upright RGB image (:func:`normalise`), or raise RecordError saying why not."""
    return normalise(load_image(source, max_pixels))


def loads_as_is(img) -> bool:
    """Whether LLaMA-Factory's own loading of this stored image (open, resize, convert to RGB) gives the
    pixels a build sees: an RGB or greyscale image (resizing before or after the conversion is then the
    same), with no transparency and no EXIF turn."""
    return img.mode in ("RGB", "L") and "transparency" not in img.info and img.getexif().get(ORIENTATION, 1) == 1


def png_bytes(img) -> bytes:
    """The normalised image as a PNG: lossless, so it decodes (and is re-encoded by ``datasets``) to the same pixels."""
    buffer = io.BytesIO()
    normalise(img).save(buffer, format="PNG")
    return buffer.getvalue()

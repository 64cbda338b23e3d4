"""Loading user images defensively: every failure becomes a RecordError with a readable reason."""

from __future__ import annotations

import os
import warnings

from seva_plugin.errors import RecordError

# Above this a file is treated as a decompression bomb (Pillow's own default is 89.5M pixels).
MAX_PIXELS = 64_000_000


def load_rgb(path: str, max_pixels: int = MAX_PIXELS):
    """Open ``path`` as an upright RGB image, or raise RecordError saying why not."""
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not path:
        raise RecordError("record has an empty image path", "no_image")
    if not os.path.exists(path):
        raise RecordError(f"image file not found: {path}", "missing_file")
    if os.path.isdir(path):
        raise RecordError(f"image path is a directory: {path}", "missing_file")
    if os.path.getsize(path) == 0:
        raise RecordError(f"image file is empty (0 bytes): {path}", "empty_file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise RecordError(f"image too large: {w}x{h} pixels exceeds the limit of {max_pixels} (possible decompression bomb): {path}", "too_large")
                img.load()
                img = ImageOps.exif_transpose(img)
    except RecordError:
        raise
    except UnidentifiedImageError:
        raise RecordError(f"not an image (format not recognised): {path}", "not_an_image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise RecordError(f"image too large (possible decompression bomb): {path}: {exc}", "too_large") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise RecordError(f"image cannot be decoded, truncated or corrupt ({exc}): {path}", "undecodable") from None

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

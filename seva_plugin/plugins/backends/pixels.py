"""Where each image sits in a processor's ``pixel_values``, tensor-space augmentation on it, and the
way back to a picture.

Shared by every backend and the gallery, so a tensor-space augmenter (SeVa's diffusion noise)
touches exactly the same numbers whichever engine generates, and ``seva inspect`` shows them
(:func:`displayed_image`).
"""

from __future__ import annotations

from typing import Any

from seva_plugin.pipeline.views import view_generator

# The image-token text LLaMA-Factory's InternVL plugin writes for one tile's features (data/mm_plugin.py).
INTERNVL_CONTEXT = "<IMG_CONTEXT>"


def image_slices(mm: dict, rows: list[int] | None = None) -> list[slice]:
    """Where each image's pixels sit in ``pixel_values``, image by image:

    - Qwen2-VL, Qwen2.5-VL, Qwen3-VL: a run of flattened patches, ``t * h * w`` rows (``image_grid_thw``);
    - InternVL: a run of tiles (one, or a grid plus a thumbnail with ``crop_to_patches``);
    - Gemma 3: the image, then its pan-and-scan crops (``image_do_pan_and_scan``);
    - LLaVA, LLaVA-NeXT (its AnyRes tiles in one 5-D row), InternVL and Gemma 3 by default: one row.

    LLaMA-Factory drops the processor's per-image counts of InternVL tiles and Gemma 3 crops
    (``num_patches``, ``num_crops``), so ``rows`` gives them (``Renderer.image_rows``, read off each
    image's expanded prompt). Without it, and without ``image_grid_thw``, each image is one row.
    """
    if "image_grid_thw" in mm:
        counts = [int(c) for c in mm["image_grid_thw"].prod(-1)]
    elif rows is not None:
        counts = [int(c) for c in rows]
    else:
        counts = [1] * len(mm["pixel_values"])
    if sum(counts) != len(mm["pixel_values"]):
        raise ValueError(f"pixel_values has {len(mm['pixel_values'])} rows but the images' layout says {sum(counts)} ({counts}).")
    starts = [sum(counts[:i]) for i in range(len(counts))]
    return [slice(s, s + c) for s, c in zip(starts, counts, strict=True)]


def rows_per_image(plugin: str, expansion: str, processor) -> int:
    """How many rows of ``pixel_values`` one image fills, read off the text its ``<image>`` expanded to
    (LLaMA-Factory's ``process_messages``): InternVL writes ``image_seq_length`` context tokens a tile;
    Gemma 3 writes one begin-of-image token for the image and one for each crop. Else one row."""
    if plugin == "intern_vl":
        return max(1, expansion.count(INTERNVL_CONTEXT) // int(processor.image_seq_length))
    if plugin == "gemma3":
        return max(1, expansion.count(processor.boi_token))
    return 1


def augment_tensors(mm: dict, augmenter, seeds_and_counts: list[tuple[int, int]], view: int, rows: list[int] | None = None) -> dict:
    """A copy of ``mm`` whose pixels went through a tensor-space augmenter.

    ``seeds_and_counts`` lists, in batch order, each record's seed and image count; image ``k`` of
    a record is noised with ``view_generator(seed, view, k)``, on all of its rows (every tile or
    crop of it). ``rows``: as in :func:`image_slices`.
    """
    pixels = mm["pixel_values"].clone()
    slices = iter(image_slices(mm, rows))
    for seed, count in seeds_and_counts:
        for k in range(count):
            s = next(slices)
            pixels[s] = augmenter(pixels[s], view_generator(seed, view, k))
    return {**mm, "pixel_values": pixels}


def concat_mm(parts: list[dict]) -> dict:
    """Join several multimodal input dicts along the batch axis (LLaVA-NeXT patch counts padded)."""
    import torch

    if len(parts) == 1:
        return parts[0]
    out: dict[str, Any] = {}
    for key in parts[0]:
        values: list[Any] = [p[key] for p in parts]
        if isinstance(values[0], torch.Tensor):
            if key == "pixel_values" and values[0].dim() >= 5 and len({v.shape[1] for v in values}) > 1:
                width = max(v.shape[1] for v in values)
                values = [torch.cat([v, v.new_zeros((v.shape[0], width - v.shape[1], *v.shape[2:]))], dim=1) for v in values]
            out[key] = torch.cat(values, dim=0)
        else:
            out[key] = [x for v in values for x in v]  # per-image lists (e.g. image sizes)
    return out


# -- back to pictures: what the model saw, for display (``seva inspect``) ------------------------
def displayed_image(mm: dict, where: slice, processor: Any, plugin: str, index: int = 0, source: Any = None) -> Any:
    """Image ``index`` of ``mm`` (its rows ``where`` of ``pixel_values``) as a PIL image, de-normalised
    with the image processor's mean and std: the Qwen families' flattened patches un-patchified;
    InternVL's tiles put back in their grid (the thumbnail, a copy of the whole image, left out;
    ``source`` is the image the processor was given, whose size chose the grid); otherwise the first
    row (LLaVA-NeXT's base view of the whole image, Gemma 3's whole image before any crops).
    ``plugin``: LLaMA-Factory's name of the template's image plugin (``Renderer.plugin``)."""
    import numpy as np
    from PIL import Image

    ip = processor.image_processor
    mean, std = np.asarray(ip.image_mean, dtype=np.float32), np.asarray(ip.image_std, dtype=np.float32)
    x = mm["pixel_values"][where].float().numpy()
    if "image_grid_thw" in mm:
        x = unpatchify(x, [int(v) for v in mm["image_grid_thw"][index]], ip)
    elif plugin == "intern_vl" and len(x) > 1:
        x = untile(x, tile_grid(source, len(x), processor))
    else:
        x = x[0]
        while x.ndim > 3:  # LLaVA-NeXT: (tiles, C, H, W); the first tile is the whole image
            x = x[0]
    x = x.transpose(1, 2, 0) * std + mean
    return Image.fromarray((np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8))


def unpatchify(x: Any, thw: list[int], ip: Any) -> Any:
    """Invert Qwen2-VL's patch flattening: (t*h*w, C*tp*p*p) -> (C, H, W) of the first frame."""
    t, h, w = thw
    p, tp, m = ip.patch_size, ip.temporal_patch_size, ip.merge_size
    c = x.shape[1] // (tp * p * p)
    x = x.reshape(t, h // m, w // m, m, m, c, tp, p, p)
    x = x.transpose(0, 6, 5, 1, 3, 7, 2, 4, 8)  # t, tp, c, h/m, m, p, w/m, m, p
    return x.reshape(t * tp, c, h * p, w * p)[0]


def untile(x: Any, grid: tuple[int, int] | None) -> Any:
    """InternVL tiles (the grid's tiles row by row, then a thumbnail) -> (C, H, W) of the grid; without
    a known grid, every tile side by side."""
    import numpy as np

    if grid is None:
        return np.concatenate(list(x), axis=2)
    columns, rows = grid
    return np.concatenate([np.concatenate(list(x[r * columns : (r + 1) * columns]), axis=2) for r in range(rows)], axis=1)


def regularized_size(width: int, height: int, max_pixels: int, min_pixels: int) -> tuple[int, int]:
    """The size LLaMA-Factory gives an image before its processor sees it. Vendored from LLaMA-Factory
    0.9.5, ``data/mm_plugin.py``, ``MMPluginMixin._preprocess_image`` (the rule of every plugin that
    does not override it, InternVL's included): scaled down to ``max_pixels``, then up to ``min_pixels``."""
    import math

    if width * height > max_pixels:
        factor = math.sqrt(max_pixels / (width * height))
        width, height = int(width * factor), int(height * factor)
    if width * height < min_pixels:
        factor = math.sqrt(min_pixels / (width * height))
        width, height = int(width * factor), int(height * factor)
    return width, height


def tile_grid(source: Any, tiles: int, processor: Any) -> tuple[int, int] | None:
    """``(columns, rows)`` of the grid InternVL's processor cut ``source`` into (``tiles`` = the grid
    plus a thumbnail), found as the processor finds it: from the image as LLaMA-Factory resized it
    (its InternVL plugin's defaults when the processor has no limits set)."""
    if source is None:
        return None
    from transformers.models.got_ocr2.image_processing_got_ocr2 import get_optimal_tiled_canvas

    ip = processor.image_processor
    width, height = regularized_size(
        source.width, source.height, getattr(processor, "image_max_pixels", 1024 * 1024), getattr(processor, "image_min_pixels", 32 * 32)
    )
    size = ip.size if isinstance(ip.size, dict) else {"height": ip.size.height, "width": ip.size.width}
    # LLaMA-Factory asks for 1..12 tiles when its crop_to_patches is on; else the image processor's own limits apply
    low, high = (1, 12) if getattr(processor, "crop_to_patches", False) else (ip.min_patches, ip.max_patches)
    columns, rows = get_optimal_tiled_canvas((height, width), (size["height"], size["width"]), low, high)
    return (columns, rows) if columns * rows + 1 == tiles else None

"""Where each image sits in a processor's ``pixel_values``, and tensor-space augmentation on it.

Shared by every backend and the gallery, so a tensor-space augmenter (SeVa's diffusion noise)
touches exactly the same numbers whichever engine generates.
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

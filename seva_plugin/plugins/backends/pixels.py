"""Where each image sits in a processor's ``pixel_values``, and tensor-space augmentation on it.

Shared by every backend and the gallery, so a tensor-space augmenter (SeVa's diffusion noise)
touches exactly the same numbers whichever engine generates.
"""

from __future__ import annotations

from seva_plugin.build.views import view_generator


def image_slices(mm: dict) -> list[slice]:
    """Where each image's pixels sit in ``pixel_values``: one row per image (LLaVA, LLaVA-NeXT),
    or a run of patches per image (Qwen2-VL, sized by ``image_grid_thw``)."""
    if "image_grid_thw" in mm:
        counts = [int(c) for c in mm["image_grid_thw"].prod(-1)]
    else:
        counts = [1] * len(mm["pixel_values"])
    starts = [sum(counts[:i]) for i in range(len(counts))]
    return [slice(s, s + c) for s, c in zip(starts, counts, strict=True)]


def augment_tensors(mm: dict, augmenter, seeds_and_counts: list[tuple[int, int]], view: int) -> dict:
    """A copy of ``mm`` whose pixels went through a tensor-space augmenter.

    ``seeds_and_counts`` lists, in batch order, each record's seed and image count; image ``k`` of
    a record is noised with ``view_generator(seed, view, k)``.
    """
    pixels = mm["pixel_values"].clone()
    slices = iter(image_slices(mm))
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
    out = {}
    for key in parts[0]:
        values = [p[key] for p in parts]
        if isinstance(values[0], torch.Tensor):
            if key == "pixel_values" and values[0].dim() >= 5 and len({v.shape[1] for v in values}) > 1:
                width = max(v.shape[1] for v in values)
                values = [torch.cat([v, v.new_zeros((v.shape[0], width - v.shape[1], *v.shape[2:]))], dim=1) for v in values]
            out[key] = torch.cat(values, dim=0)
        else:
            out[key] = [x for v in values for x in v]
    return out

"""Augmentation throughput: images per second of ``diffusion_noise`` and ``moco``, one image per call."""

from __future__ import annotations

import time


def augment_throughput(size: int, images: list[str], seconds: float = 1.5) -> dict[str, float]:
    """Images per second at ``size`` px: diffusion noise on processor-shaped tensors, moco on PIL images."""
    import torch
    from PIL import Image

    from seva_plugin.pipeline.views import view_generator
    from seva_plugin.plugins.augmenters.diffusion_noise import DiffusionNoise
    from seva_plugin.plugins.augmenters.moco import Moco

    pils = [Image.open(p).convert("RGB").resize((size, size)) for p in images]
    pixels = torch.randn(len(pils), 3, size, size, generator=torch.Generator().manual_seed(0))
    noise, moco = DiffusionNoise(step=500), Moco()

    def rate(fn, n_items: int) -> float:
        fn()  # warm-up
        best, deadline = 0.0, time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            fn()
            best = max(best, n_items / (time.perf_counter() - start))
        return best

    out = {}
    out["diffusion_noise"] = rate(lambda: [noise(pixels[i : i + 1], view_generator(i, 1, 0)) for i in range(len(pils))], len(pils))
    out["moco"] = rate(lambda: [moco(img, view_generator(i, 1, 0)) for i, img in enumerate(pils)], len(pils))
    return out

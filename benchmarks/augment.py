"""Augmentation throughput: images per second of ``diffusion_noise`` and ``moco``, one image per call."""

from __future__ import annotations

import time

from benchmarks.common import Section, log

NAME = "augment"
KEYS: tuple[str, ...] = ()


def add_arguments(p) -> None:
    p.add_argument_group("augment").add_argument("--aug-images", type=int, default=32, help="images per augmentation throughput round (default: 32)")


def run(ctx) -> Section:
    """Workload ``augment``: images per second of each augmenter at 336 px."""
    log("augmentation throughput at 336 px")
    aug = augment_throughput(336, ctx.images(ctx.args.aug_images))
    return Section(
        [
            "augmentation throughput at 336 px, one image per call, 1 thread:",
            f"  diffusion_noise (3x336x336 tensor): {aug['diffusion_noise']:7.0f} images/s",
            f"  moco (336x336 PIL image):           {aug['moco']:7.0f} images/s",
        ]
    )


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

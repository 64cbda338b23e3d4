"""Augmenter ``moco``: MoCo-v2-style views in pixel space.

SeVa's README lists this family but its code was never released; we follow MoCo v2's recipe
(random resized crop, colour jitter, random grayscale, Gaussian blur, horizontal flip).
The crop is resized back to the input size so the model's processor sees a normal image.

torchvision's random transforms draw from torch's global RNG, which the build's prefetch thread
and its main thread share: a view seeded there would depend on what the other thread drew
meanwhile. So every draw here comes from a generator of the view's own, in the order and with
the ranges of torchvision 0.26's ``v2.RandomResizedCrop`` (scale ``(crop_scale, 1)``, ratio
``(3/4, 4/3)``) and ``v2.ColorJitter``; only the deterministic image kernels are torchvision's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from seva_plugin import hookimpl
from seva_plugin.errors import ConfigError
from seva_plugin.interfaces import Augmenter

CROP_RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's default aspect ratio range


@dataclass
class Moco(Augmenter):
    name = "moco"
    space = "pixel"
    crop_scale: float = 0.2  # smallest crop area fraction (MoCo v2: 0.2)
    jitter: float = 0.4  # brightness, contrast and saturation strength
    hue: float = 0.1
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: float = 2.0  # sigma drawn from [0.1, blur_sigma]
    flip_p: float = 0.5

    def __post_init__(self) -> None:
        ranges = {
            "crop_scale": (self.crop_scale, 0.0, 1.0, "a fraction of the image area in (0, 1]"),
            "jitter": (self.jitter, 0.0, math.inf, "at least 0"),
            "hue": (self.hue, 0.0, 0.5, "between 0 and 0.5 (a half turn of the colour wheel)"),
            "blur_sigma": (self.blur_sigma, 0.1, math.inf, "at least 0.1"),
            **{key: (getattr(self, key), 0.0, 1.0, "a probability between 0 and 1") for key in ("jitter_p", "grayscale_p", "blur_p", "flip_p")},
        }
        for key, (value, low, high, allowed) in ranges.items():
            if not low <= value <= high or (key == "crop_scale" and value == 0):
                raise ConfigError(f"augment.{key} is {value}: it must be {allowed}.")

    def __call__(self, image: Any, generator: Any = None) -> Any:
        import torch
        from PIL import ImageFilter
        from torchvision.transforms.v2 import functional as F

        # One draw from the caller's generator (or the global RNG without one) seeds the view's own.
        g = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))

        def uniform(low: float, high: float) -> float:
            return float(torch.empty(1).uniform_(low, high, generator=g).item())

        def chance(p: float) -> bool:
            return bool(torch.rand((), generator=g) < p)

        top, left, height, width = self._crop_box(image.height, image.width, uniform, g)
        image = F.resized_crop(image, top, left, height, width, size=[image.height, image.width], antialias=True)
        if chance(self.jitter_p):
            image = self._jitter(image, uniform, g)
        if chance(self.grayscale_p):
            image = F.rgb_to_grayscale(image, num_output_channels=3)
        if chance(self.blur_p):
            sigma = 0.1 + float(torch.rand((), generator=g)) * (self.blur_sigma - 0.1)
            image = image.filter(ImageFilter.GaussianBlur(radius=sigma))
        if chance(self.flip_p):
            image = F.horizontal_flip(image)
        return image

    def _crop_box(self, height: int, width: int, uniform: Any, g: Any) -> tuple[int, int, int, int]:
        """RandomResizedCrop's box: up to 10 tries at an area and aspect ratio that fit, else the centre."""
        import torch

        log_ratio = torch.log(torch.tensor(CROP_RATIO))
        for _ in range(10):
            area = height * width * uniform(self.crop_scale, 1.0)
            ratio = torch.exp(torch.empty(1).uniform_(log_ratio[0].item(), log_ratio[1].item(), generator=g)).item()
            w, h = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, size=(1,), generator=g).item())
                left = int(torch.randint(0, width - w + 1, size=(1,), generator=g).item())
                return top, left, h, w
        w, h = width, height
        if width / height < min(CROP_RATIO):
            h = int(round(w / min(CROP_RATIO)))
        elif width / height > max(CROP_RATIO):
            w = int(round(h * max(CROP_RATIO)))
        return (height - h) // 2, (width - w) // 2, h, w

    def _jitter(self, image: Any, uniform: Any, g: Any) -> Any:
        """ColorJitter: brightness, contrast and saturation factors from [1 - jitter, 1 + jitter],
        a hue shift from [-hue, hue], applied in a random order (a strength of 0 leaves its step out)."""
        import torch
        from torchvision.transforms.v2 import functional as F

        order = torch.randperm(4, generator=g).tolist()
        low = max(0.0, 1 - self.jitter)
        factors = [uniform(low, 1 + self.jitter) if self.jitter else None for _ in range(3)]
        factors.append(uniform(-self.hue, self.hue) if self.hue else None)
        steps = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue)
        for k in order:
            if factors[k] is not None:
                image = steps[k](image, factors[k])
        return image


@hookimpl
def register_augmenters(register):
    register(Moco)

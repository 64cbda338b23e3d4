"""Augmenters ``low_resolution`` and ``color_jitter``: STIC's two image corruptions, in pixel space.

The official ``stic/generate_pref.py`` (``yihedeng9/STIC``, ``load_image``) corrupts an image with
``T.Resize(size=20)`` or ``T.ColorJitter(brightness=.5, hue=.3)``, each half of the time (the strategy
``stic`` makes that choice per record). Both are usable on their own, with any strategy.

- ``low_resolution``: the shorter side resized to ``size`` pixels, the aspect ratio kept (bilinear,
  antialiased: ``T.Resize`` on a PIL image). The small image goes to the model's processor as it is,
  as in the official code (``image_sizes`` of the corrupted image); the processor scales it up.
- ``color_jitter``: torchvision's ``ColorJitter`` with the view's own generator: a random order of the
  four steps (``torch.randperm(4)``), then brightness, contrast and saturation factors from
  ``[max(0, 1 - s), 1 + s]`` and a hue shift from ``[-hue, hue]``, a strength of 0 leaving its step out
  (the draws of torchvision's ``ColorJitter.get_params``, which uses torch's global RNG; see ``moco.py``
  for why a view draws from its own generator).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from seva_plugin import hookimpl
from seva_plugin.errors import ConfigError, show
from seva_plugin.interfaces import Augmenter


@dataclass
class LowResolution(Augmenter):
    name = "low_resolution"
    space = "pixel"
    size: int = 20  # the shorter side, in pixels (STIC: T.Resize(size=20))

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ConfigError(f"augment.size must be a positive number of pixels, got {show(self.size)}.")

    def __call__(self, image: Any, generator: Any = None) -> Any:
        from torchvision.transforms.v2 import functional as F

        return F.resize(image, [self.size], antialias=True)


@dataclass
class ColorJitter(Augmenter):
    name = "color_jitter"
    space = "pixel"
    brightness: float = 0.5  # STIC: brightness=.5
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.3  # STIC: hue=.3

    def __post_init__(self) -> None:
        for key in ("brightness", "contrast", "saturation"):
            value = getattr(self, key)
            if not 0 <= value < math.inf:
                raise ConfigError(f"augment.{key} must be at least 0, got {show(value)}.")
        if not 0 <= self.hue <= 0.5:
            raise ConfigError(f"augment.hue must be between 0 and 0.5 (a half turn of the colour wheel), got {show(self.hue)}.")

    def __call__(self, image: Any, generator: Any = None) -> Any:
        import torch
        from torchvision.transforms.v2 import functional as F

        order = torch.randperm(4, generator=generator).tolist()

        def uniform(low: float, high: float) -> float:
            return float(torch.empty(1).uniform_(low, high, generator=generator).item())

        factors: list[float | None] = [uniform(max(0.0, 1 - s), 1 + s) if s else None for s in (self.brightness, self.contrast, self.saturation)]
        factors.append(uniform(-self.hue, self.hue) if self.hue else None)
        steps = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue)
        for k in order:
            factor = factors[k]
            if factor is not None:
                image = steps[k](image, factor)
        return image


@hookimpl
def register_augmenters(register: Any) -> None:
    register(LowResolution)
    register(ColorJitter)

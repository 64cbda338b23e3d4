"""Augmenter ``moco``: MoCo-v2-style views in pixel space.

SeVa's README lists this family but its code was never released; we follow MoCo v2's recipe
(random resized crop, colour jitter, random grayscale, Gaussian blur, horizontal flip).
The crop is resized back to the input size so the model's processor sees a normal image.
"""

from __future__ import annotations

from dataclasses import dataclass

from seva_plugin import hookimpl
from seva_plugin.interfaces import Augmenter


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

    def __call__(self, image, generator=None):
        import torch
        from PIL import ImageFilter
        from torchvision.transforms import v2

        seed = int(torch.randint(0, 2**62, (1,), generator=generator)) if generator is not None else None
        with torch.random.fork_rng(devices=[]):  # torchvision draws from the global RNG: isolate it
            if seed is not None:
                torch.manual_seed(seed)
            size = (image.height, image.width)
            image = v2.RandomResizedCrop(size, scale=(self.crop_scale, 1.0), antialias=True)(image)
            if torch.rand(()) < self.jitter_p:
                image = v2.ColorJitter(self.jitter, self.jitter, self.jitter, self.hue)(image)
            if torch.rand(()) < self.grayscale_p:
                image = v2.Grayscale(num_output_channels=3)(image)
            if torch.rand(()) < self.blur_p:
                sigma = 0.1 + float(torch.rand(())) * (self.blur_sigma - 0.1)
                image = image.filter(ImageFilter.GaussianBlur(radius=sigma))
            if torch.rand(()) < self.flip_p:
                image = v2.functional.horizontal_flip(image)
        return image


@hookimpl
def register_augmenters(register):
    register(Moco)

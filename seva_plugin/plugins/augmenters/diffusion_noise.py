"""Augmenter ``diffusion_noise``: one forward-diffusion step on the processor's output tensor.

The schedule is the one the official SeVa code takes from VCD:
``betas = sigmoid(linspace(-6, 6, 1000)) * (5e-3 - 1e-5) + 1e-5``, ``abar = cumprod(1 - betas)``,
``x_t = sqrt(abar[t]) * x0 + sqrt(1 - abar[t]) * eps``. It is applied in fp32 to the normalised
pixel tensor (after the processor), not to the PIL image.
"""

from __future__ import annotations

from dataclasses import dataclass

from seva_plugin import hookimpl
from seva_plugin.errors import ConfigError
from seva_plugin.interfaces import Augmenter


def noise_coefficients(step: int, num_steps: int = 1000) -> tuple[float, float]:
    """``(sqrt(abar[step]), sqrt(1 - abar[step]))`` of the official schedule, computed in fp32 as there."""
    import torch

    betas = torch.sigmoid(torch.linspace(-6, 6, num_steps)) * (0.5e-2 - 1e-5) + 1e-5
    abar = torch.cumprod(1 - betas, dim=0)
    return float(torch.sqrt(abar[step])), float(torch.sqrt(1 - abar[step]))


@dataclass
class DiffusionNoise(Augmenter):
    name = "diffusion_noise"
    space = "tensor"
    step: int = 500  # T=500 is "more stable across runs"; the paper's best numbers used T=800
    num_steps: int = 1000

    def __post_init__(self):
        if not 0 <= self.step < self.num_steps:
            raise ConfigError(f"diffusion_noise.step must be in [0, {self.num_steps - 1}], got {self.step}.")
        self.signal, self.noise = noise_coefficients(self.step, self.num_steps)

    def __call__(self, pixel_values, generator=None):
        import torch

        x0 = pixel_values.float()
        eps = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(x0.device)
        return (self.signal * x0 + self.noise * eps).to(pixel_values.dtype)


@hookimpl
def register_augmenters(register):
    register(DiffusionNoise)

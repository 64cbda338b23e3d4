import pytest
import torch

from seva_plugin import api
from seva_plugin.errors import ConfigError
from seva_plugin.plugins.augmenters.diffusion_noise import noise_coefficients


@pytest.mark.parametrize("step, signal, noise", [(500, 0.863, 0.505), (800, 0.467, 0.884)])
def test_noise_coefficients_match_official_values(step, signal, noise):
    a, b = noise_coefficients(step)
    assert round(a, 3) == signal and round(b, 3) == noise


def test_noise_matches_vcd_formula_written_out():
    # The official code's schedule, written independently in float64.
    betas = torch.sigmoid(torch.linspace(-6, 6, 1000, dtype=torch.float64)) * (0.5e-2 - 1e-5) + 1e-5
    abar = torch.cumprod(1 - betas, 0)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    expected = abar[500].sqrt() * x.double() + (1 - abar[500]).sqrt() * eps.double()
    got = api.augmenter("diffusion_noise", step=500)(x, torch.Generator().manual_seed(7))
    assert got.shape == x.shape and got.dtype == x.dtype
    assert torch.allclose(got.double(), expected, atol=1e-5)


def test_noise_statistics_and_seeding():
    noise = api.augmenter("diffusion_noise", step=800)
    zeros = torch.zeros(1, 3, 64, 64)
    out = noise(zeros, torch.Generator().manual_seed(0))
    assert abs(out.std().item() - 0.884) < 0.02
    assert torch.equal(out, noise(zeros, torch.Generator().manual_seed(0)))
    assert not torch.equal(out, noise(zeros, torch.Generator().manual_seed(1)))


def test_noise_keeps_bf16_input_dtype_but_computes_in_fp32():
    x = torch.ones(1, 3, 4, 4, dtype=torch.bfloat16)
    out = api.augmenter("diffusion_noise", step=0)(x, torch.Generator().manual_seed(0))
    assert out.dtype == torch.bfloat16


def test_noise_step_is_validated():
    with pytest.raises(ConfigError, match="step"):
        api.augmenter("diffusion_noise", step=1000)
    with pytest.raises(ConfigError, match="unknown key 'steps'.*Did you mean 'step'"):
        api.augmenter("diffusion_noise", steps=10)


def test_moco_is_seeded_and_keeps_size():
    from PIL import Image

    img = Image.linear_gradient("L").convert("RGB").resize((64, 48))
    moco = api.augmenter("moco")
    a = moco(img, torch.Generator().manual_seed(3))
    b = moco(img, torch.Generator().manual_seed(3))
    c = moco(img, torch.Generator().manual_seed(4))
    assert a.size == img.size
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()
    # the global RNG is untouched, so augmenting never shifts other randomness
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    moco(img, torch.Generator().manual_seed(5))
    assert torch.equal(before, torch.rand(1))

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


def _textured(width: int = 64, height: int = 48):
    from PIL import Image

    g = torch.Generator().manual_seed(11)
    pixels = (torch.rand(height, width, 3, generator=g) * 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels)


def _torchvision_moco(moco, image, seed: int):
    """The recipe written with torchvision's own random transforms (which draw from the global RNG),
    seeded as moco seeds its view: the reference for what moco's draws must give."""
    from PIL import ImageFilter
    from torchvision.transforms import v2

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        image = v2.RandomResizedCrop((image.height, image.width), scale=(moco.crop_scale, 1.0), antialias=True)(image)
        if torch.rand(()) < moco.jitter_p:
            image = v2.ColorJitter(moco.jitter, moco.jitter, moco.jitter, moco.hue)(image)
        if torch.rand(()) < moco.grayscale_p:
            image = v2.Grayscale(num_output_channels=3)(image)
        if torch.rand(()) < moco.blur_p:
            image = image.filter(ImageFilter.GaussianBlur(radius=0.1 + float(torch.rand(())) * (moco.blur_sigma - 0.1)))
        if torch.rand(()) < moco.flip_p:
            image = v2.functional.horizontal_flip(image)
    return image


@pytest.mark.parametrize("params", [{}, {"crop_scale": 0.9, "jitter": 0.0, "hue": 0.0, "grayscale_p": 1.0}, {"jitter_p": 1.0, "blur_p": 1.0, "flip_p": 0.0}])
def test_moco_draws_what_torchvisions_transforms_draw(params):
    # The same distribution as MoCo v2's torchvision recipe, view for view (20 seeds, three settings,
    # a wide image that makes some crops fall back to the centre).
    moco = api.augmenter("moco", **params)
    for k, image in enumerate([_textured(), _textured(200, 20)]):
        for seed in range(10):
            view_seed = int(torch.randint(0, 2**62, (1,), generator=torch.Generator().manual_seed(100 * k + seed)))
            expected = _torchvision_moco(moco, image, view_seed)
            got = moco(image, torch.Generator().manual_seed(100 * k + seed))
            assert got.tobytes() == expected.tobytes(), (params, k, seed)


def test_moco_views_made_at_once_in_two_threads_are_their_own():
    # The build's prefetch thread and its main thread can augment at the same time. Here two calls
    # interleave in a fixed order: A draws its crop box and pauses in the crop, B starts and reaches
    # its crop, A finishes, then B. Each view must still be the one its seed gives alone (with one
    # RNG for both, B's seeding changes A's remaining draws).
    import threading

    from PIL import Image

    order: dict[int, tuple[threading.Event, threading.Event]] = {}  # image -> (say I arrived, wait for)

    class PausingImage(Image.Image):
        def crop(self, box=None):
            arrived, wait_for = order[id(self)]
            arrived.set()
            assert wait_for.wait(60), "the other thread never got there"
            return super().crop(box)

    moco = api.augmenter("moco")
    image_a, image_b = _textured(), _textured(48, 64)
    alone = {"a": moco(image_a, torch.Generator().manual_seed(3)).tobytes(), "b": moco(image_b, torch.Generator().manual_seed(4)).tobytes()}
    paused_a, paused_b = image_a.copy(), image_b.copy()
    paused_a.__class__ = paused_b.__class__ = PausingImage
    a_in_crop, b_in_crop, a_done = threading.Event(), threading.Event(), threading.Event()
    order[id(paused_a)] = (a_in_crop, b_in_crop)
    order[id(paused_b)] = (b_in_crop, a_done)
    out = {}

    def run_a():
        out["a"] = moco(paused_a, torch.Generator().manual_seed(3)).tobytes()
        a_done.set()

    def run_b():
        if a_in_crop.wait(60):
            out["b"] = moco(paused_b, torch.Generator().manual_seed(4)).tobytes()

    threads = [threading.Thread(target=run_a), threading.Thread(target=run_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert out == alone


@pytest.mark.parametrize(
    "key, value, allowed",
    [("crop_scale", 0.0, r"\(0, 1\]"), ("crop_scale", 1.5, r"\(0, 1\]"), ("hue", 0.6, "0.5"), ("flip_p", 1.2, "probability"), ("jitter", -0.1, "at least 0")],
)
def test_moco_refuses_values_out_of_range(key, value, allowed):
    with pytest.raises(ConfigError, match=rf"augment\.{key} is {value}: it must be .*{allowed}"):
        api.augmenter("moco", **{key: value})

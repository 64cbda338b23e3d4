"""STIC's corruptions as augmenters: ``low_resolution`` is ``T.Resize(size=20)`` and ``color_jitter`` is
``T.ColorJitter(brightness=.5, hue=.3)`` (official ``stic/generate_pref.py``), drawn from the view's own generator."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from seva_plugin.errors import ConfigError
from seva_plugin.registry import get_registry

torch = pytest.importorskip("torch")
T = pytest.importorskip("torchvision.transforms")


def photo(width: int = 61, height: int = 47) -> Image.Image:
    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def augmenter(name: str, **params):
    return get_registry().get("augmenter", name).build(params, "augment")


def test_low_resolution_is_torchvisions_resize_of_the_shorter_side():
    image = photo()
    out = augmenter("low_resolution")(image, torch.Generator().manual_seed(0))
    assert out.size == (25, 20)  # the shorter side 20, the aspect ratio kept (61/47 * 20 = 25.9 -> 25)
    assert np.array_equal(np.asarray(out), np.asarray(T.Resize(size=20)(image)))
    assert augmenter("low_resolution", size=8)(image).size[1] == 8


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_color_jitter_draws_what_torchvisions_colorjitter_draws_from_the_same_seed(seed):
    """The official corruption draws from torch's global RNG; ours from the view's generator, in the same order."""
    image = photo()
    torch.manual_seed(seed)
    official = T.ColorJitter(brightness=0.5, hue=0.3)(image)
    ours = augmenter("color_jitter")(image, torch.Generator().manual_seed(seed))
    assert np.array_equal(np.asarray(ours), np.asarray(official))
    assert not np.array_equal(np.asarray(ours), np.asarray(image))


def test_color_jitter_depends_on_the_generator_only():
    image, jitter = photo(), augmenter("color_jitter", brightness=0.4, contrast=0.3, saturation=0.2, hue=0.1)
    a = jitter(image, torch.Generator().manual_seed(5))
    torch.manual_seed(123)  # the global RNG is not used
    b = jitter(image, torch.Generator().manual_seed(5))
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(jitter(image, torch.Generator().manual_seed(6))))


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("low_resolution", {"size": 0}, "augment.size must be a positive number"),
        ("color_jitter", {"hue": 0.7}, "augment.hue must be between 0 and 0.5"),
        ("color_jitter", {"brightness": -1.0}, "augment.brightness must be at least 0"),
    ],
)
def test_bad_keys_are_refused(name, params, message):
    with pytest.raises(ConfigError, match=message):
        augmenter(name, **params)

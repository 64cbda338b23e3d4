"""The Python API: what the CLI does, callable from code.

>>> from seva_plugin import api
>>> result = api.build("data_templates/seva_llava_t500.yaml", ["backend.batch_size=32"])
>>> noise = api.augmenter("diffusion_noise", step=800)
>>> noised = noise(pixel_values, generator)
"""

from __future__ import annotations

from seva_plugin.pipeline.build import Build, BuildResult, build
from seva_plugin.registry import get_plugin_manager, get_registry

__all__ = ["Build", "BuildResult", "build", "get_plugin_manager", "augmenter", "component"]


def component(kind: str, name: str, **params):
    """Any registered component, constructed with validated params."""
    return get_registry().get(kind, name).build(params)


def augmenter(name: str, **params):
    """An augmenter callable. ``diffusion_noise`` maps a float tensor (N, C, H, W) and an optional
    ``torch.Generator`` to the noised tensor; ``moco`` maps a PIL image to an augmented PIL image."""
    return component("augmenter", name, **params)

import inspect
import os
import subprocess
import sys
from dataclasses import dataclass

import pluggy
import pytest

from helpers import REPO
from seva_plugin import hookimpl, hookspecs, interfaces
from seva_plugin.errors import ConfigError
from seva_plugin.registry import KINDS, Registry, make_plugin_manager

BUILTINS = {
    "source": {"jsonl", "llava", "llamafactory"},
    "augmenter": {"diffusion_noise", "moco"},
    "backend": {"hf", "vllm"},
    "strategy": {"seva", "csr"},
    "filter": {"empty", "identical", "truncated"},
    "writer": {"llamafactory", "trl"},
}


def test_every_builtin_is_registered_by_its_own_module():
    registry = Registry(make_plugin_manager(entry_points=False))
    for kind, names in BUILTINS.items():
        assert names <= set(registry.names(kind)), kind
        for name in names:
            assert registry.get(kind, name).plugin.startswith("seva_plugin.plugins.")


def test_every_hook_is_documented_and_every_kind_has_a_hook():
    specs = {name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("register_")}
    assert len(specs) == len(KINDS)
    for name in specs:
        assert getattr(hookspecs, name).__doc__, f"{name} has no docstring"
        doc = open(os.path.join(REPO, "docs", "plugins.md")).read()
        assert name in doc, f"{name} is not in docs/plugins.md"


@dataclass
class Blur(interfaces.Augmenter):
    name = "test_blur"
    space = "pixel"
    radius: float = 1.0

    def __call__(self, image, generator=None):
        from PIL import ImageFilter

        return image.filter(ImageFilter.GaussianBlur(self.radius))


class ThirdParty:
    @hookimpl
    def register_augmenters(self, register):
        register(Blur)


def test_a_third_party_plugin_registers_like_a_builtin():
    pm = make_plugin_manager(entry_points=False)
    pm.register(ThirdParty(), name="seva-blur")
    registry = Registry(pm)
    component = registry.get("augmenter", "test_blur")
    assert component.plugin == "seva-blur"
    assert component.build({"radius": 2.0}).radius == 2.0
    with pytest.raises(ConfigError, match="unknown key 'radus'.*Did you mean 'radius'"):
        component.build({"radus": 2.0})
    with pytest.raises(ConfigError, match="'radius' must be a number"):
        component.build({"radius": "big"})


def test_name_clash_names_both_plugins():
    class Clash:
        @hookimpl
        def register_augmenters(self, register):
            register(Blur, name="moco")

    pm = make_plugin_manager(entry_points=False)
    pm.register(Clash(), name="clashing-plugin")
    with pytest.raises(ConfigError, match="registered twice.*seva_plugin.plugins.augmenters.moco.*clashing-plugin"):
        Registry(pm)


def test_misspelled_hook_fails_loudly():
    class Typo:
        @hookimpl
        def register_augmentors(self, register):  # typo: not a hook
            pass

    pm = make_plugin_manager(entry_points=False)
    pm.register(Typo())
    with pytest.raises(pluggy.PluginValidationError):
        pm.check_pending()


def test_unknown_component_suggests_the_closest_name():
    registry = Registry(make_plugin_manager(entry_points=False))
    with pytest.raises(ConfigError, match="unknown augmenter 'difusion_noise'.*Did you mean 'diffusion_noise'"):
        registry.get("augmenter", "difusion_noise")


@pytest.mark.slow
def test_seva_plugins_lists_kind_name_and_plugin_without_heavy_imports():
    code = (
        "import sys; from seva_plugin.commands.cli import main; main(['plugins']); print(sorted(m for m in ('torch', 'transformers', "
        "'llamafactory') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for kind, names in BUILTINS.items():
        for name in names:
            assert any(line.split()[:2] == [kind, name] for line in out.splitlines()), (kind, name)
    assert out.strip().splitlines()[-1] == "[]"


def test_a_component_must_subclass_its_interface():
    class NotAnAugmenter:
        name = "plain"

        def __call__(self, image, generator=None):
            return image

    class Plugin:
        @hookimpl
        def register_augmenters(self, register):
            register(NotAnAugmenter)

    pm = make_plugin_manager(entry_points=False)
    pm.register(Plugin(), name="bad-plugin")
    with pytest.raises(ConfigError, match="bad-plugin registered .*NotAnAugmenter.* does not subclass seva_plugin.interfaces.Augmenter"):
        Registry(pm)

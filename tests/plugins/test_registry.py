import inspect
import os
import re
import subprocess
import sys
from dataclasses import dataclass

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
    registry = Registry(make_plugin_manager(third_party=False))
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
    pm = make_plugin_manager(third_party=False)
    pm.register(ThirdParty(), name="seva-blur")
    registry = Registry(pm)
    component = registry.get("augmenter", "test_blur")
    assert component.plugin == "seva-blur"
    assert component.build({"radius": 2.0}).radius == 2.0
    with pytest.raises(ConfigError, match="unknown key 'radus'.*Did you mean 'radius'"):
        component.build({"radus": 2.0})
    with pytest.raises(ConfigError, match="'radius' must be a number"):
        component.build({"radius": "big"})


def test_a_name_clash_is_refused_when_used_naming_both_plugins_and_the_rest_work():
    class Clash:
        @hookimpl
        def register_augmenters(self, register):
            register(Blur, name="moco")

    pm = make_plugin_manager(third_party=False)
    pm.register(Clash(), name="clashing-plugin")
    registry = Registry(pm)
    with pytest.raises(
        ConfigError,
        match=r"augmenter 'moco' is registered by plugin 'seva_plugin.plugins.augmenters.moco' \(package seva-plugin\) and by plugin 'clashing-plugin'\.",
    ):
        registry.get("augmenter", "moco")
    assert registry.get("augmenter", "diffusion_noise").plugin == "seva_plugin.plugins.augmenters.diffusion_noise"
    assert [c.plugin for c in registry if c.name == "moco"] == ["seva_plugin.plugins.augmenters.moco", "clashing-plugin"]


def test_a_misspelled_hook_leaves_its_plugin_out_in_one_line_naming_it_and_the_hook():
    class Typo:
        @hookimpl
        def register_augmentors(self, register):  # typo: not a hook
            register(Blur)

    pm = make_plugin_manager(third_party=False)
    pm.register(Typo(), name="typo-plugin")
    registry = Registry(pm)
    [typo] = [p for p in registry.plugins if p.name == "typo-plugin"]
    assert (typo.state, typo.problem) == ("broken", "it implements register_augmentors, which is not a seva_plugin hook. Did you mean 'register_augmenters'?")
    assert registry.get("augmenter", "moco")


def test_a_hook_that_raises_leaves_its_whole_plugin_out_and_only_it():
    class KeepAll(interfaces.Filter):
        name = "test_keep_all"

        def __call__(self, pair):
            return None

    class Raises:
        @hookimpl
        def register_filters(self, register):
            register(KeepAll)

        @hookimpl
        def register_augmenters(self, register):
            raise RuntimeError("boom\n  second line")

    pm = make_plugin_manager(third_party=False)
    pm.register(Raises(), name="raising-plugin")
    registry = Registry(pm)
    [raising] = [p for p in registry.plugins if p.name == "raising-plugin"]
    assert (raising.state, raising.problem) == ("broken", "register_augmenters raised RuntimeError: boom second line")
    assert "test_keep_all" not in registry.names("filter")  # all or nothing: half a plugin would mislead
    assert registry.get("filter", "empty")


def test_unknown_component_suggests_the_closest_name():
    registry = Registry(make_plugin_manager(third_party=False))
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

    pm = make_plugin_manager(third_party=False)
    pm.register(Plugin(), name="bad-plugin")
    registry = Registry(pm)
    [bad] = [p for p in registry.plugins if p.name == "bad-plugin"]
    assert bad.state == "broken"
    assert re.fullmatch(r"it registered .*NotAnAugmenter.* as an augmenter, but that does not subclass seva_plugin.interfaces.Augmenter", bad.problem)
    with pytest.raises(ConfigError, match=r"unknown augmenter 'plain'.*Left out, so not searched: plugin 'bad-plugin': it registered"):
        registry.get("augmenter", "plain")

"""Finding and loading plugins: every plugin, the built-ins included, is an entry point of the
``seva_plugin`` group, and each is loaded on its own, so one that cannot load leaves the rest working.

A plugin is known by its entry-point name and by its package (the distribution declaring it).
Loading never raises for one plugin's fault:

- a plugin that fails to import, or whose hooks pluggy refuses, is *broken*: left out, its error
  kept as one line (the registry adds the plugins whose hooks fail or are misspelled);
- a plugin named in ``SEVA_DISABLE_PLUGINS`` (or ``seva --disable-plugin``) is *disabled*: not imported;
- an entry-point name that two packages declare is a *clash*: both load, and the registry refuses
  their components when a build uses one (neither can be turned off alone, so one must go).
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from dataclasses import dataclass, replace
from functools import cache
from importlib.metadata import EntryPoint, distributions
from typing import Literal

import pluggy

from seva_plugin import hookspecs
from seva_plugin.errors import short, unknown

GROUP = "seva_plugin"
PACKAGE = "seva-plugin"
DISABLE_ENV = "SEVA_DISABLE_PLUGINS"

# The built-ins are the entry points pyproject.toml declares; this copy (kept equal to it by
# tests/plugins/test_plugin_loading.py) is used only when no installed metadata declares them: a
# source tree run without `pip install`. Each is registered under its module's name.
BUILTIN_PLUGINS = (
    "seva_plugin.plugins.sources.jsonl",
    "seva_plugin.plugins.sources.llava",
    "seva_plugin.plugins.sources.llamafactory",
    "seva_plugin.plugins.sources.images",
    "seva_plugin.plugins.augmenters.diffusion_noise",
    "seva_plugin.plugins.augmenters.moco",
    "seva_plugin.plugins.augmenters.corruptions",
    "seva_plugin.plugins.backends.hf",
    "seva_plugin.plugins.backends.vllm",
    "seva_plugin.plugins.strategies.seva",
    "seva_plugin.plugins.strategies.csr.strategy",
    "seva_plugin.plugins.strategies.stic.strategy",
    "seva_plugin.plugins.strategies.rlaifv.strategy",
    "seva_plugin.plugins.filters.answers",
    "seva_plugin.plugins.writers.llamafactory",
    "seva_plugin.plugins.writers.trl",
)

State = Literal["loaded", "clash", "broken", "disabled"]


@dataclass(frozen=True)
class Plugin:
    """A plugin as loading found it. ``problem`` (one line) says why it is broken or disabled, or
    which packages share its entry-point name."""

    name: str
    package: str | None = None  # None: registered from code, not through an entry point
    state: State = "loaded"
    problem: str = ""

    def label(self) -> str:
        return f"plugin '{self.name}'" + (f" (package {self.package})" if self.package else "")


def one_line(exc: BaseException) -> str:
    """An exception as one short line: its type and its message, whitespace collapsed."""
    text = " ".join(str(exc).split())
    return short(f"{type(exc).__name__}: {text}" if text else type(exc).__name__, 300)


class PluginManager(pluggy.PluginManager):
    """pluggy's manager with every hook of ``seva_plugin.hookspecs``, plus what loading found:
    where each registered plugin came from, and the plugins left out."""

    def __init__(self) -> None:
        super().__init__(GROUP)
        self.add_hookspecs(hookspecs)
        self.origins: dict[str, Plugin] = {}  # by the name pluggy registered the plugin under
        self.left_out: list[Plugin] = []  # broken and disabled plugins, which pluggy never saw

    def origin(self, registered_name: str) -> Plugin:
        return self.origins.get(registered_name) or Plugin(registered_name)

    def load(self, found: list[tuple[EntryPoint, str]], disabled: Collection[str] = ()) -> None:
        """Load ``(entry point, package)`` pairs, each on its own (see the module's docstring)."""
        by_name: dict[str, list[tuple[EntryPoint, str]]] = {}
        for ep, package in found:
            by_name.setdefault(ep.name, []).append((ep, package))
        for name, declared in by_name.items():
            packages = [package for _, package in declared]
            if name in disabled:
                self.left_out += [Plugin(name, p, "disabled", f"turned off by {DISABLE_ENV} or --disable-plugin") for p in packages]
                continue
            clash = f"packages {' and '.join(packages)} both declare the entry point '{name}'" if len(declared) > 1 else ""
            for ep, package in declared:
                plugin = Plugin(name, package, "clash" if clash else "loaded", clash)
                self._load_one(ep, name if not clash else f"{name} ({package})", plugin)

    def _load_one(self, ep: EntryPoint, key: str, plugin: Plugin) -> None:
        try:
            obj = ep.load()
            if self.is_registered(obj):  # another entry point loaded this very module: it registers once
                again = f"{ep.value} is already loaded as plugin '{self.get_name(obj)}'"
                self.left_out.append(plugin if plugin.state == "clash" else replace(plugin, state="broken", problem=again))
                return
            self.register(obj, name=key)
        except Exception as exc:  # noqa: BLE001 - any import-time failure of a plugin is that plugin's, reported as one line
            if self.get_plugin(key) is not None:
                self.unregister(name=key)
            self.left_out.append(replace(plugin, state="broken", problem=one_line(exc)))
        else:
            self.origins[key] = plugin


def canonical(package: str) -> str:
    return re.sub(r"[-_.]+", "-", package).lower()


def entry_points(third_party: bool = True) -> list[tuple[EntryPoint, str]]:
    """Every ``seva_plugin`` entry point with the package declaring it: the built-ins first, then by
    package and name. A package seen twice on ``sys.path`` counts once, the first (as
    ``importlib.metadata.entry_points`` does)."""
    seen: set[str] = set()
    builtins: list[tuple[EntryPoint, str]] = []
    others: list[tuple[EntryPoint, str]] = []
    for dist in distributions():
        declared = dist.entry_points.select(group=GROUP)
        if not declared:  # most packages: their METADATA, slow to parse, is not read
            continue
        try:
            package = dist.metadata["Name"]
        except KeyError:  # metadata without a name: not an installed package pip would know either
            continue
        if not package or canonical(package) in seen:
            continue
        seen.add(canonical(package))
        (builtins if canonical(package) == PACKAGE else others).extend((ep, package) for ep in declared)
    if not builtins:
        builtins = [(EntryPoint(module, module, GROUP), PACKAGE) for module in BUILTIN_PLUGINS]
    others.sort(key=lambda found: (canonical(found[1]), found[0].name))
    return sorted(builtins, key=lambda found: found[0].name) + (others if third_party else [])


def disabled_plugins() -> list[str]:
    """The plugin names ``SEVA_DISABLE_PLUGINS`` lists (comma-separated)."""
    return [name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip()]


def make_plugin_manager(third_party: bool = True, disabled: Collection[str] = ()) -> PluginManager:
    """The built-in plugins and, with ``third_party``, every installed package's, but the ``disabled``
    ones. A disabled name that no plugin has is an error: a typo would leave the plugin on."""
    found = entry_points(third_party)
    names = {ep.name for ep, _ in found}
    for name in disabled:
        if name not in names:
            raise unknown("plugin", name, names, f"{DISABLE_ENV} or --disable-plugin")
    pm = PluginManager()
    pm.load(found, disabled)
    return pm


@cache
def get_plugin_manager() -> PluginManager:
    """The process's plugin manager: every installed plugin but those ``SEVA_DISABLE_PLUGINS`` names."""
    return make_plugin_manager(disabled=disabled_plugins())

"""The plugin manager and the component registry.

Built-in components are plugins too: the modules under ``seva_plugin/plugins/`` are registered
exactly like a third-party package found through the ``seva_plugin`` entry-point group.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass
from functools import cache
from importlib import import_module

import pluggy

from seva_plugin import hookspecs, interfaces
from seva_plugin.errors import ConfigError, show, unknown

KINDS = tuple(interfaces.KINDS)

DEFAULT_PLUGINS = (
    "seva_plugin.plugins.sources.jsonl",
    "seva_plugin.plugins.sources.llava",
    "seva_plugin.plugins.sources.llamafactory",
    "seva_plugin.plugins.augmenters.diffusion_noise",
    "seva_plugin.plugins.augmenters.moco",
    "seva_plugin.plugins.backends.hf",
    "seva_plugin.plugins.backends.vllm",
    "seva_plugin.plugins.strategies.seva",
    "seva_plugin.plugins.strategies.csr.strategy",
    "seva_plugin.plugins.filters.answers",
    "seva_plugin.plugins.writers.llamafactory",
    "seva_plugin.plugins.writers.trl",
)


@dataclass(frozen=True)
class Component:
    kind: str
    name: str
    cls: type
    plugin: str

    def params(self) -> dict[str, object]:
        """Config keys the component accepts, with their defaults (``inspect._empty`` if required)."""
        sig = inspect.signature(self.cls)
        return {k: p.default for k, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD}

    def build(self, params: dict, where: str = "", **context):
        """Instantiate with user params (validated strictly) plus host-supplied context."""
        allowed = self.params()
        for key in params:
            if key not in allowed or key in context:
                raise unknown("key", key, [k for k in allowed if k not in context], where or f"{self.kind} '{self.name}'")
        missing = [k for k, v in allowed.items() if v is inspect.Parameter.empty and k not in params and k not in context]
        if missing:
            raise ConfigError(f"{where or self.kind + ' ' + repr(self.name)}: missing required key(s): {', '.join(missing)}.")
        kwargs = {k: v for k, v in context.items() if k in allowed}
        kwargs.update(params)
        if dataclasses.is_dataclass(self.cls):
            _check_types(self.cls, kwargs, where or f"{self.kind} '{self.name}'")
        return self.cls(**kwargs)


def _check_types(cls, kwargs: dict, where: str) -> None:
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    for key, value in kwargs.items():
        if key in hints:
            check_value(f"{where}: '{key}'", value, expected_name(hints[key]))


def expected_name(hint) -> str:
    return hint if isinstance(hint, str) else getattr(hint, "__name__", str(hint))


SIMPLE = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string"}


def check_value(label: str, value, hint: str) -> None:
    """The one type rule for config values, components' keys and the build config's own alike:
    ``hint`` is a field's annotation as written (``bool``, ``int | None``, ``float``...). A YAML
    string is never a boolean or a number (``overwrite: "false"`` is refused), a boolean never a
    number, a float never an integer, and numbers are finite. Annotations of other types are not
    checked here (their component checks them)."""
    parts = [p.strip() for p in str(hint).split("|")]
    nullable = "None" in parts
    kinds = [p for p in parts if p != "None"]
    if not kinds or any(k not in SIMPLE for k in kinds) or (value is None and nullable):
        return
    for kind in kinds:
        if kind == "bool" and isinstance(value, bool):
            return
        if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
            return
        if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{label} must be a finite number, got {show(value)}.")
            return
        if kind == "str" and isinstance(value, str):
            if "\0" in value:  # no path, name or setting holds one; os and C libraries stop at it
                raise ConfigError(f"{label} holds a NUL character (\\0): {show(value)}.")
            return
    wanted = " or ".join(SIMPLE[k] for k in kinds) + (" or null" if nullable else "")
    raise ConfigError(f"{label} must be {wanted}, got {show(value)}.")


class Registry:
    """Every registered component by kind and name, with the plugin that provided it."""

    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm
        self._items: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}
        for kind in KINDS:
            hook = getattr(pm.hook, f"register_{'strategies' if kind == 'strategy' else kind + 's'}")
            for impl in hook.get_hookimpls():
                plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
                impl.function(register=self._registrar(kind, plugin_name))

    def _registrar(self, kind: str, plugin: str):
        def register(cls, name: str | None = None):
            name = name or getattr(cls, "name", None)  # noqa: B009 - a class may lack it: reported below
            base = interfaces.KINDS[kind]
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise ConfigError(f"plugin {plugin} registered {cls!r} as a {kind}, but it does not subclass seva_plugin.interfaces.{base.__name__}.")
            if not name:
                raise ConfigError(f"plugin {plugin} registered a {kind} without a name: {cls!r}")
            if name in self._items[kind]:
                other = self._items[kind][name].plugin
                raise ConfigError(f"{kind} '{name}' is registered twice: by {other} and by {plugin}.")
            self._items[kind][name] = Component(kind, name, cls, plugin)

        return register

    def get(self, kind: str, name: str) -> Component:
        try:
            return self._items[kind][name]
        except KeyError:
            raise unknown(kind, name, self._items[kind]) from None

    def names(self, kind: str) -> list[str]:
        return sorted(self._items[kind])

    def __iter__(self):
        for kind in KINDS:
            yield from (self._items[kind][n] for n in sorted(self._items[kind]))


def make_plugin_manager(entry_points: bool = True) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("seva_plugin")
    pm.add_hookspecs(hookspecs)
    for module in DEFAULT_PLUGINS:
        pm.register(import_module(module), name=module)
    if entry_points:
        pm.load_setuptools_entrypoints("seva_plugin")
    pm.check_pending()  # a misspelled hook name fails here, not silently
    return pm


@cache
def get_plugin_manager() -> pluggy.PluginManager:
    return make_plugin_manager()


@cache
def get_registry() -> Registry:
    return Registry(get_plugin_manager())

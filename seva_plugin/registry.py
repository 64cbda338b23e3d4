"""The component registry: every component the plugins register, by kind and name.

The plugins come from ``seva_plugin.plugin_manager`` (the built-ins are entry points too). One
plugin's fault never stops the others: a plugin whose hook raises, is misspelled, or registers a
class that is not a component is left out with one line saying why; a name that two plugins
register stays listed and is refused, naming both packages, only when a build uses it.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, Generic, Literal, TypeVar, overload

from seva_plugin import interfaces
from seva_plugin.errors import ConfigError, did_you_mean, show, unknown
from seva_plugin.hookspecs import Register
from seva_plugin.plugin_manager import (
    DISABLE_ENV,
    PACKAGE,
    Plugin,
    PluginManager,
    canonical,
    disabled_plugins,
    get_plugin_manager,
    make_plugin_manager,
    one_line,
)

__all__ = ["KINDS", "Registered", "Registry", "check_value", "disable_plugins", "get_plugin_manager", "get_registry", "make_plugin_manager"]

KINDS = tuple(interfaces.KINDS)
HOOKS = {kind: "register_" + ("strategies" if kind == "strategy" else kind + "s") for kind in KINDS}  # the hook of each kind

C = TypeVar("C", bound=interfaces.Component, covariant=True)


@dataclass(frozen=True)
class Registered(Generic[C]):
    """A component class as a plugin registered it: its kind, its name and the plugin it came from."""

    kind: str
    name: str
    cls: type[C]
    origin: Plugin

    @property
    def plugin(self) -> str:
        return self.origin.name

    def params(self) -> dict[str, object]:
        """Config keys the component accepts, with their defaults (``inspect._empty`` if required)."""
        sig = inspect.signature(self.cls)
        return {k: p.default for k, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD}

    def build(self, params: Mapping[str, object], where: str = "", **context: object) -> C:
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


def _check_types(cls: type[Any], kwargs: Mapping[str, object], where: str) -> None:
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    for key, value in kwargs.items():
        if key in hints:
            check_value(f"{where}: '{key}'", value, expected_name(hints[key]))


def expected_name(hint: object) -> str:
    return hint if isinstance(hint, str) else getattr(hint, "__name__", str(hint))


SIMPLE = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string"}


def check_value(label: str, value: object, hint: str) -> None:
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


class PluginProblem(Exception):
    """Why a plugin's components cannot be used, as one line."""


def article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def registrar(kind: str, origin: Plugin, entries: list[Registered[Any]]) -> Register[interfaces.Component]:
    """The ``register`` callback a plugin's hook for ``kind`` gets: it checks each class and adds it to ``entries``."""
    base = interfaces.KINDS[kind]

    def register(cls: type[interfaces.Component], name: str | None = None) -> None:
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginProblem(f"it registered {cls!r} as {article(kind)}, but that does not subclass seva_plugin.interfaces.{base.__name__}")
        name = name or getattr(cls, "name", None)
        if not name or not isinstance(name, str):
            raise PluginProblem(f"it registered {article(kind)} without a name: {cls!r}")
        if any(e.kind == kind and e.name == name for e in entries):
            raise PluginProblem(f"it registered {kind} '{name}' twice")
        entries.append(Registered(kind, name, cls, origin))

    return register


def registrations(pm: PluginManager, plugin: object, origin: Plugin) -> list[Registered[Any]]:
    """What one plugin registers, its hooks called one by one; ``PluginProblem`` if any fails."""
    kinds = {hook: kind for kind, hook in HOOKS.items()}
    entries: list[Registered[Any]] = []
    for caller in pm.get_hookcallers(plugin) or []:
        impls = [impl for impl in caller.get_hookimpls() if impl.plugin is plugin]
        if caller.name not in kinds:
            if not caller.has_spec() and not all(impl.optionalhook for impl in impls):  # a typo would register nothing
                raise PluginProblem(f"it implements {caller.name}, which is not a seva_plugin hook.{did_you_mean(caller.name, kinds)}")
            continue
        register = registrar(kinds[caller.name], origin, entries)
        for impl in impls:
            try:
                impl.function(*(register for _ in impl.argnames))  # the only argument a registry hook has
            except PluginProblem:
                raise
            except Exception as exc:  # noqa: BLE001 - a plugin's own bug: that plugin is left out, the others stay
                raise PluginProblem(f"{caller.name} raised {one_line(exc)}") from exc
    return entries


def listing_order(plugin: Plugin) -> tuple[bool, bool, str, str]:
    """The built-ins first, then installed packages by name, then plugins registered from code."""
    return plugin.package != PACKAGE, plugin.package is None, canonical(plugin.package or ""), plugin.name


class Registry:
    """Every registered component by kind and name, and every plugin found, with its state."""

    def __init__(self, pm: PluginManager) -> None:
        self.pm = pm
        self._items: dict[str, dict[str, list[Registered[Any]]]] = {kind: {} for kind in KINDS}
        self.plugins: list[Plugin] = []  # every plugin found, in listing order
        for key, obj in pm.list_name_plugin():
            origin = pm.origin(key)
            try:
                entries = registrations(pm, obj, origin)
            except PluginProblem as exc:
                origin, entries = replace(origin, state="broken", problem=str(exc)), []
            self.plugins.append(origin)
            for entry in entries:
                self._items[entry.kind].setdefault(entry.name, []).append(entry)
        self.plugins = sorted(self.plugins + pm.left_out, key=listing_order)

    @overload
    def get(self, kind: Literal["source"], name: str) -> Registered[interfaces.Source]: ...
    @overload
    def get(self, kind: Literal["augmenter"], name: str) -> Registered[interfaces.Augmenter]: ...
    @overload
    def get(self, kind: Literal["backend"], name: str) -> Registered[interfaces.Backend]: ...
    @overload
    def get(self, kind: Literal["strategy"], name: str) -> Registered[interfaces.Strategy]: ...
    @overload
    def get(self, kind: Literal["filter"], name: str) -> Registered[interfaces.Filter]: ...
    @overload
    def get(self, kind: Literal["writer"], name: str) -> Registered[interfaces.Writer]: ...
    @overload
    def get(self, kind: str, name: str) -> Registered[interfaces.Component]: ...
    def get(self, kind: str, name: str) -> Registered[Any]:
        """The component ``kind`` ``name``; a clear error if it is unknown or two plugins claim it."""
        entries = self._items[kind].get(name, [])
        if not entries:
            error = unknown(kind, name, self._items[kind])
            left_out = [f"{p.label()}: {p.problem}" for p in self.plugins if p.state in ("broken", "disabled")]
            raise ConfigError(f"{error} Left out, so not searched: {'; '.join(left_out)}.") if left_out else error
        if len(entries) > 1:
            raise ConfigError(
                f"{kind} '{name}' is registered by {' and by '.join(e.origin.label() for e in entries)}. Uninstall one of the packages, "
                f"or turn one plugin off: {DISABLE_ENV}=<plugin> or seva --disable-plugin <plugin>."
            )
        if entries[0].origin.state == "clash":
            raise ConfigError(f"{kind} '{name}' comes from {entries[0].origin.label()}, but {entries[0].origin.problem}: uninstall one of them.")
        return entries[0]

    def note(self, entry: Registered[Any]) -> str:
        """Why a build would refuse ``entry`` (``seva plugins`` prints it beside it), or ``""``."""
        others = [e.origin.label() for e in self._items[entry.kind][entry.name] if e is not entry]
        if others:
            return f"clash: also registered by {' and '.join(others)}"
        return f"clash: {entry.origin.problem}" if entry.origin.state == "clash" else ""

    def names(self, kind: str) -> list[str]:
        return sorted(self._items[kind])

    def __iter__(self) -> Iterator[Registered[Any]]:
        for kind in KINDS:
            for name in sorted(self._items[kind]):
                yield from self._items[kind][name]


def disable_plugins(names: Iterable[str]) -> None:
    """Turn plugins off for the rest of this process (``seva --disable-plugin``): the names join
    ``SEVA_DISABLE_PLUGINS``, which subprocesses inherit too."""
    os.environ[DISABLE_ENV] = ",".join([*disabled_plugins(), *names])
    get_plugin_manager.cache_clear()
    get_registry.cache_clear()


@cache
def get_registry() -> Registry:
    """The process's registry. Each plugin left out for a fault is named on stderr, one line each."""
    registry = Registry(get_plugin_manager())
    for plugin in registry.plugins:
        if plugin.state == "broken":
            print(f"seva: warning: {plugin.label()} is left out: {plugin.problem}", file=sys.stderr)
    return registry

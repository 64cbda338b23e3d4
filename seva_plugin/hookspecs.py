"""Every hook seva-plugin calls. One file, so a plugin author reads the whole contract here.

Each registry hook is called once, when the registry is built, with a ``register`` callback
(:class:`Register`). Call ``register(cls)`` for each component class the plugin provides; the
class's ``name`` is its user-facing name (or pass ``name=...``). A component subclasses its base in
``seva_plugin.interfaces`` and its constructor keyword arguments are its config keys
(``docs/plugins.md``). The host checks the base class, name clashes and parameters; a hook that
raises, or is not one of these, leaves its plugin out (and only it) with one line saying why.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

import pluggy

from seva_plugin.interfaces import Augmenter, Backend, Component, Filter, Source, Strategy, Writer

hookspec = pluggy.HookspecMarker("seva_plugin")
hookimpl = pluggy.HookimplMarker("seva_plugin")

C = TypeVar("C", bound=Component, contravariant=True)


class Register(Protocol[C]):
    """The callback each registry hook gets: ``register(cls)``, or ``register(cls, name="...")`` to
    register ``cls`` under another name than its ``name`` attribute."""

    def __call__(self, cls: type[C], name: str | None = None) -> None: ...


@hookspec
def register_sources(register: Register[Source]) -> None:
    """Register prompt sources (``Source``): ``iter_records()`` yields ``PromptRecord`` or ``Reject``
    lazily, never the whole set in memory."""


@hookspec
def register_augmenters(register: Register[Augmenter]) -> None:
    """Register image augmenters (``Augmenter``), in pixel space (a PIL image before the
    processor) or tensor space (one image's slice of the processor's output)."""


@hookspec
def register_backends(register: Register[Backend]) -> None:
    """Register generation backends (``Backend``): constructed with the build's ``model``,
    ``template`` and their own config keys, they serve ``generate(requests) -> answers``."""


@hookspec
def register_strategies(register: Register[Strategy]) -> None:
    """Register preference strategies (``Strategy``): ``make_pairs(records, backend, augmenter)``
    asks the backend through the generation contract and returns ``Pair`` objects."""


@hookspec
def register_filters(register: Register[Filter]) -> None:
    """Register pair filters (``Filter``): ``flt(pair)`` returns a drop reason, or ``None`` to keep."""


@hookspec
def register_writers(register: Register[Writer]) -> None:
    """Register output writers (``Writer``): constructed with ``dataset_dir``, ``dataset_name`` and
    their own ``output`` keys; ``prepare(overwrite)`` runs before any model loads, ``write(pairs,
    overwrite)`` writes the files a trainer reads."""

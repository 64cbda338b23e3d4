"""Every hook seva-plugin calls. One file, so a plugin author reads the whole contract here.

Each registry hook is called once, when the plugin manager is built, with a ``register``
callback. Call ``register(component)`` for each component the plugin provides; the
component's ``name`` attribute is its user-facing name (or pass ``name=...``).
A component is a class whose constructor keyword arguments are its config keys
(see ``docs/plugins.md``); the host validates names, clashes and parameters.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("seva_plugin")
hookimpl = pluggy.HookimplMarker("seva_plugin")


@hookspec
def register_sources(register):
    """Register prompt sources.

    A source is constructed with its config keys and iterated with ``iter_records()``;
    it yields ``PromptRecord`` objects lazily (never the whole set in memory).
    """


@hookspec
def register_augmenters(register):
    """Register image augmenters.

    An augmenter has ``space = "pixel"`` (called as ``aug(image, generator) -> image`` on a
    PIL image before the processor) or ``space = "tensor"`` (called as
    ``aug(pixel_values, generator) -> pixel_values`` on the processor's output).
    """


@hookspec
def register_backends(register):
    """Register generation backends.

    A backend is constructed with the build's ``model``, ``template``, ``seed`` and its own
    config keys, and answers ``generate(records, views) -> list[list[str]]``: one list of
    answers per view, where a view is ``None`` (the clean image) or an augmenter.
    """


@hookspec
def register_strategies(register):
    """Register preference strategies.

    A strategy turns a batch of loaded records into pairs with
    ``make_pairs(records, backend, augmenter) -> list[Pair]``. Optional: ``views(augmenter)``
    returns the views it will ask the backend for, so batches can be prepared ahead of time;
    ``uses_augmenter = False`` says the build's augmenter is not applied (recorded as such).
    """


@hookspec
def register_filters(register):
    """Register pair filters.

    A filter is called as ``flt(pair) -> str | None``: a drop reason, or ``None`` to keep.
    """


@hookspec
def register_writers(register):
    """Register output writers.

    A writer is constructed with ``dataset_dir``, ``dataset_name`` and its own ``output`` keys.
    ``prepare(overwrite)`` runs before any model loads and refuses what would clobber user data;
    ``write(pairs, overwrite) -> dict`` turns the finished pairs (dicts, in source order) into
    the files a trainer reads and returns what it wrote, for the manifest.
    """

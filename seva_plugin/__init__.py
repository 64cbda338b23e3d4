"""Self-supervised visual preference data (SeVa, CSR) for LLaMA-Factory.

A plugin author needs only what is exported here: ``hookimpl`` to register components, the
component bases and the generation contract (see ``seva_plugin.interfaces``).
"""

from importlib import metadata as _metadata

from seva_plugin.hookspecs import hookimpl
from seva_plugin.interfaces import (
    CLEAN,
    Answer,
    Augmenter,
    Backend,
    Filter,
    GenerationRequest,
    Sampling,
    Source,
    Strategy,
    View,
    Writer,
)

try:  # one version, pyproject.toml's: installed packages carry it in their metadata
    __version__ = _metadata.version("seva-plugin")
except _metadata.PackageNotFoundError:  # a checkout on the path that was never installed
    __version__ = "0+unknown"
__all__ = [
    "CLEAN",
    "Answer",
    "Augmenter",
    "Backend",
    "Filter",
    "GenerationRequest",
    "Sampling",
    "Source",
    "Strategy",
    "View",
    "Writer",
    "__version__",
    "hookimpl",
]

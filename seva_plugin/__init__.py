"""Self-supervised visual preference data (SeVa, CSR) for LLaMA-Factory.

A plugin author needs only what is exported here: ``hookimpl`` to register components, the
component bases and the generation contract (see ``seva_plugin.interfaces``).
"""

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

__version__ = "0.2.0"
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

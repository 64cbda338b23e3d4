"""Self-supervised visual preference data (SeVa, CSR) for LLaMA-Factory.

A plugin author needs only what is exported here: ``hookimpl`` to register components, the
component bases (``seva_plugin.interfaces``), the generation contract (``seva_plugin.contract``),
the records a build hands components, the errors to raise and the seeding helpers. Backend authors
also use ``seva_plugin.rendering`` (prompts and pixels as training sees them) and
``seva_plugin.testing`` (the contract's conformance kit).
"""

from importlib import metadata as _metadata

from seva_plugin.hookspecs import hookimpl
from seva_plugin.interfaces import (
    CLEAN,
    Answer,
    Augmenter,
    Backend,
    Completion,
    ConfigError,
    Filter,
    FinishReason,
    GenerationRequest,
    LoadedRecord,
    NotServed,
    Pair,
    PromptRecord,
    RecordError,
    Reject,
    Sampling,
    ScoreRequest,
    Scores,
    Source,
    Strategy,
    View,
    Writer,
    WriteResult,
    check_sampling,
    record_seed,
    sample_seed,
    view_generator,
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
    "Completion",
    "ConfigError",
    "Filter",
    "FinishReason",
    "GenerationRequest",
    "LoadedRecord",
    "NotServed",
    "Pair",
    "PromptRecord",
    "RecordError",
    "Reject",
    "Sampling",
    "ScoreRequest",
    "Scores",
    "Source",
    "Strategy",
    "View",
    "WriteResult",
    "Writer",
    "__version__",
    "check_sampling",
    "hookimpl",
    "record_seed",
    "sample_seed",
    "view_generator",
]

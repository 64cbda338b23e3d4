"""Every component's interface; with ``contract.py`` (the generation contract) and ``hookspecs.py``
(the hooks), the whole interface a plugin uses.

The flow of a build is one direction::

    Source -> (image checks) -> Strategy (asks a Backend, with Views made by an Augmenter) -> Filters -> Writer

A component is a class whose constructor keyword arguments are its config keys; it subclasses
one of the bases below and is registered by a plugin (``hookspecs.py``). The bases hold the
defaults the build relies on, so the core never probes a component for optional attributes.

**Who builds what.** A source builds ``PromptRecord``\\ s; the build loads them into
``LoadedRecord``\\ s (images, seed). A strategy never builds records: it builds requests for the
records it is given (``prompt``/``system`` to ask something else) and ``Pair``\\ s of those same
records (``Pair.prompt`` to train on another prompt than the record's); a writer writes pairs.

The record types, errors and seeding helpers live beside the pipeline (``pipeline/records.py``,
``errors.py``, ``pipeline/views.py``) and are re-exported here, as the contract's types are, and
from ``seva_plugin``: one import gives a plugin everything it uses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from seva_plugin.contract import (
    CLEAN,
    Answer,
    Completion,
    FinishReason,
    GenerationRequest,
    NotServed,
    Sampling,
    ScoreRequest,
    Scores,
    View,
    check_sampling,
)
from seva_plugin.errors import ConfigError, RecordError
from seva_plugin.pipeline.records import LoadedRecord, Pair, PromptRecord, Reject
from seva_plugin.pipeline.views import record_seed, sample_seed, view_generator

__all__ = [  # what is defined here, and the re-exports
    "Answer",
    "Augmenter",
    "Backend",
    "CLEAN",
    "Completion",
    "Component",
    "ConfigError",
    "Filter",
    "FinishReason",
    "GenerationRequest",
    "KINDS",
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
    "check_sampling",
    "record_seed",
    "sample_seed",
    "view_generator",
]


# -- components ----------------------------------------------------------------------------
class Component(ABC):
    """What every component has: the user-facing ``name`` it is registered under."""

    name: ClassVar[str]


class Source(Component):
    """Unlabeled prompts. Yields them lazily, never the whole set in memory; a record that cannot
    be used comes out as a ``Reject`` with its id and reason, and reading goes on.

    ``has_questions = False`` says the records are images with no question (their prompt holds only
    the ``<image>`` markers): the build refuses it with a strategy that answers the record's
    question (``Strategy.needs_question``)."""

    has_questions: ClassVar[bool] = True

    @abstractmethod
    def iter_records(self) -> Iterator[PromptRecord | Reject]: ...

    def estimated_length(self) -> int | None:
        """Optional: how many records ``iter_records`` yields, when it can be told cheaply (the
        progress bar's total and ETA); None when it cannot. Never decides what is built."""
        return None


class Augmenter(Component):
    """Makes the augmented view of an image.

    ``space = "pixel"``: called as ``aug(image, generator) -> image`` on a PIL image before the
    processor. ``space = "tensor"``: called as ``aug(pixel_values, generator) -> pixel_values`` on
    one image's slice of the processor's output tensor. ``generator`` is a seeded ``torch.Generator``.
    """

    space: ClassVar[Literal["pixel", "tensor"]] = "pixel"

    @abstractmethod
    def __call__(self, x: Any, generator: Any = None) -> Any: ...


class Backend(Component):
    """Serves the generation contract for one model.

    Constructed with the build's ``model`` and ``template`` plus its own config keys. ``batch_size``
    is how many records the build hands a strategy at once.
    """

    batch_size: int = 8

    @abstractmethod
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Answer]:
        """One answer per request, in order."""

    def score(self, requests: Sequence[ScoreRequest]) -> list[Scores]:
        """One :class:`Scores` per request, in order. Optional: the default says it is not served."""
        raise NotServed(f"backend '{self.name}' does not score texts (Backend.score); use a backend that does, such as hf or vllm.")

    @classmethod
    def can_score(cls) -> bool:
        """Whether ``score`` is served (checked before any model loads when a strategy needs it)."""
        return cls.score is not Backend.score

    def prepare(self, requests: Sequence[GenerationRequest]) -> None:
        """Called from the build's prefetch thread with the requests a strategy declared ahead
        (``Strategy.planned_requests``), so the backend can encode prompts and process images while
        the previous batch generates: it runs while ``generate`` runs in the main thread, so whatever
        it shares with ``generate`` must be thread-safe. Optional: the default does nothing."""

    def describe(self) -> dict[str, Any]:
        """What the manifest records about the engine (name, version, dtype, device), without loading
        a model. Default: the name."""
        return {"name": self.name}

    def close(self) -> None:
        """Release the model and any engine process. Called once when the build ends."""


class Strategy(Component):
    """Turns a batch of loaded records into preference pairs, asking a backend through the contract.

    ``uses_augmenter = False`` says the build's augmenter is never applied (CSR); the manifest and
    the gallery then record no augmenter. ``needs_score = True`` says ``make_pairs`` calls
    ``backend.score``: a backend that cannot score is refused before any model loads.
    ``needs_question = False`` says the strategy asks its own prompts (STIC), so a source of images
    with no question (``Source.has_questions = False``) serves it.
    """

    uses_augmenter: ClassVar[bool] = True
    needs_score: ClassVar[bool] = False
    needs_question: ClassVar[bool] = True

    def views(self, augmenter: Augmenter) -> list[View]:
        """The views every record will be answered under, when known ahead (SeVa: clean and
        augmented). Default: none declared."""
        return []

    def planned_requests(self, records: Sequence[LoadedRecord], augmenter: Augmenter) -> list[GenerationRequest]:
        """The first requests ``make_pairs`` will send for ``records``, as it will send them, so the
        build can have the backend prepare them in its prefetch thread (called there: build requests,
        touch no backend). Default: each record under each of ``views`` with its own prompt."""
        return [GenerationRequest(r, view) for view in self.views(augmenter) for r in records]

    @abstractmethod
    def make_pairs(self, records: Sequence[LoadedRecord], backend: Backend, augmenter: Augmenter) -> list[Pair]:
        """Pairs for some of ``records`` (a record with no pair is counted as ``no_pair``)."""


class Filter(Component):
    """Drops pairs: returns a short reason to drop, or ``None`` to keep."""

    @abstractmethod
    def __call__(self, pair: Pair) -> str | None: ...


@dataclass
class WriteResult:
    """What a writer wrote: where (a file or folder), how many pairs, in which format, the registry it
    registered the data in (if any), the pairs it left out (``{"id", "reason", "code"}``) and any
    further details for the manifest (checksums, shards)."""

    path: str
    records: int
    format: str
    registry: str | None = None
    skipped: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def manifest_files(self) -> dict[str, Any]:
        """The manifest's ``files`` entry."""
        data = {"path": self.path, "format": self.format, "records": self.records, **self.details, "skipped": self.skipped}
        return {"data": data, **({"dataset_info": self.registry} if self.registry else {})}


class Writer(Component):
    """Turns the finished pairs into the files a trainer reads.

    Constructed with ``dataset_dir``, ``dataset_name`` and its own ``output`` keys.
    """

    def prepare(self, overwrite: bool) -> None:
        """Runs before any model loads: refuse what would clobber user data. Default: nothing to check."""

    @abstractmethod
    def write(self, pairs: Iterable[dict[str, Any]], overwrite: bool) -> WriteResult:
        """Write ``pairs`` (``Pair.to_json()`` dicts plus ``provenance``, in source order)."""

    def finish(self, manifest: dict[str, Any]) -> None:
        """Runs once the manifest is written, with it: describe the output where that needs the whole
        build's record (a dataset card with config, counts and provenance). Default: nothing."""


KINDS: dict[str, type[Component]] = {
    "source": Source,
    "augmenter": Augmenter,
    "backend": Backend,
    "strategy": Strategy,
    "filter": Filter,
    "writer": Writer,
}

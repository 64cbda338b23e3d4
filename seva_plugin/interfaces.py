"""Every component's interface, and the generation contract between strategies and backends.

The flow of a build is one direction::

    Source -> (image checks) -> Strategy (asks a Backend, with Views made by an Augmenter) -> Filters -> Writer

A component is a class whose constructor keyword arguments are its config keys; it subclasses
one of the bases below and is registered by a plugin (``hookspecs.py``). The bases hold the
defaults the build relies on, so the core never probes a component for optional attributes.

**The generation contract.** A strategy talks to a backend only through
``Backend.generate(requests) -> answers``: one :class:`GenerationRequest` in, one
:class:`Answer` out, in order. A request names a record and a view of its images, optionally an
answer prefix to continue from, how many answers to draw, where to stop, how to sample and
whether token log-probabilities are wanted. SeVa is "answer each record under two views"; CSR's
sentence search is "continue these prefixes, ``n`` proposals each, stop at a sentence end, with
log-probabilities". Every backend that serves the contract runs every strategy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from seva_plugin.pipeline.records import LoadedRecord, Pair, PromptRecord, Reject

FinishReason = Literal["eos", "stop", "length"]


# -- the generation contract ---------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class View:
    """What the model sees of a record's images: the clean images (``augmenter=None``) or an
    augmenter's output. ``id`` is explicit and seeds the augmenter's generator
    (``pipeline.views.view_generator(record.seed, view.id, image_index)``), so the same view can be
    rebuilt anywhere: another batch, another worker, a resume, the gallery."""

    id: int = 0
    augmenter: Augmenter | None = None

    @property
    def clean(self) -> bool:
        return self.augmenter is None

    def key(self) -> tuple[int, int]:
        """Equal for the same id and the same augmenter object."""
        return self.id, id(self.augmenter)

    def __eq__(self, other) -> bool:
        return isinstance(other, View) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())


CLEAN = View()


@dataclass(frozen=True)
class Sampling:
    """Sampling settings. ``temperature`` and ``top_p`` shape the distribution tokens are drawn from;
    log-probabilities in an :class:`Answer` are always those of the unscaled model."""

    temperature: float = 1.0
    top_p: float = 1.0


@dataclass
class GenerationRequest:
    """Answer ``record``'s prompt under ``view``.

    - ``prefix``: answer text already written; the answers continue it (and do not repeat it). The
      prompt is rendered as training renders it (the build's ``template``) and the prefix is
      tokenized as training tokenizes a response.
    - ``n``: how many answers to draw (``n > 1`` needs sampling; asking for it greedily is a
      ``ConfigError``, which stops the build, while any other exception becomes a per-record reject).
    - ``stop``: an answer ends right after the first of these strings in its *new* text (the prefix
      does not count), which stays in its text; when the string ends inside a token, the text is
      cut there and that whole token is in ``token_ids`` and ``logprobs``.
    - ``max_new_tokens``, ``sampling``: ``None`` takes the backend's configured value
      (``sampling=None`` with the backend's default ``do_sample: false`` is greedy decoding).
    - ``seed``: sampled answers are a function of ``(seed, k)`` for the ``k``-th answer, never of
      batch layout, order or resume. ``None``: the record's seed.
    - ``logprobs``: return each generated token's log-probability.

    Every backend decodes exactly what is asked: no repetition penalty or other logits processing
    from the model's ``generation_config``; an answer ends at the template's stop tokens (what
    training teaches the model to end with); a sampled answer never contains special tokens other
    than those (an image placeholder fed back as a prefix would break the image-token count).
    """

    record: LoadedRecord
    view: View = CLEAN
    prefix: str = ""
    n: int = 1
    stop: tuple[str, ...] = ()
    max_new_tokens: int | None = None
    sampling: Sampling | None = None
    seed: int | None = None
    logprobs: bool = False

    @property
    def sampling_seed(self) -> int:
        return self.record.seed if self.seed is None else self.seed


@dataclass
class Answer:
    """The ``n`` answers to one request, in order: their texts (continuations of the prefix, an
    end-of-sequence token not included), why each ended (``eos``: the model ended the answer;
    ``stop``: a stop string; ``length``: ``max_new_tokens``), and, when log-probabilities were
    asked for, each generated token's id and log-probability under the model's unscaled
    distribution (an ending end-of-sequence token included)."""

    texts: list[str]
    finish_reasons: list[FinishReason]
    logprobs: list[list[float]] | None = None
    token_ids: list[list[int]] | None = None


# -- components ----------------------------------------------------------------------------
class Component(ABC):
    """What every component has: the user-facing ``name`` it is registered under."""

    name: ClassVar[str]


class Source(Component):
    """Unlabeled prompts. Yields them lazily, never the whole set in memory; a record that cannot
    be used comes out as a ``Reject`` with its id and reason, and reading goes on."""

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

    def prepare(self, requests: Sequence[GenerationRequest]) -> None:
        """Called from the build's prefetch thread with the requests a strategy declared ahead
        (``Strategy.views``), so the backend can encode prompts and process images while the
        previous batch generates: it runs while ``generate`` runs in the main thread, so whatever
        it shares with ``generate`` must be thread-safe. Optional: the default does nothing."""

    def close(self) -> None:
        """Release the model and any engine process. Called once when the build ends."""


class Strategy(Component):
    """Turns a batch of loaded records into preference pairs, asking a backend through the contract.

    ``uses_augmenter = False`` says the build's augmenter is never applied (CSR); the manifest
    and the gallery then record no augmenter.
    """

    uses_augmenter: ClassVar[bool] = True

    def views(self, augmenter: Augmenter) -> list[View]:
        """The views every record will be answered under, when known ahead (SeVa: clean and
        augmented), so the build can have the backend prepare batches in the prefetch thread.
        Default: none declared."""
        return []

    @abstractmethod
    def make_pairs(self, records: Sequence[LoadedRecord], backend: Backend, augmenter: Augmenter) -> list[Pair]:
        """Pairs for some of ``records`` (a record with no pair is counted as ``no_pair``)."""


class Filter(Component):
    """Drops pairs: returns a short reason to drop, or ``None`` to keep."""

    @abstractmethod
    def __call__(self, pair: Pair) -> str | None: ...


class Writer(Component):
    """Turns the finished pairs into the files a trainer reads.

    Constructed with ``dataset_dir``, ``dataset_name`` and its own ``output`` keys.
    """

    def prepare(self, overwrite: bool) -> None:
        """Runs before any model loads: refuse what would clobber user data. Default: nothing to check."""

    @abstractmethod
    def write(self, pairs: Iterable[dict], overwrite: bool) -> dict:
        """Write ``pairs`` (dicts, in source order); return what was written, for the manifest."""

    def finish(self, manifest: dict) -> None:
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

"""The generation contract between strategies and backends.

A strategy talks to a backend only through ``Backend.generate(requests) -> answers`` (one
:data:`Answer`, a list of :class:`Completion`, per :class:`GenerationRequest`, in order) and
``Backend.score(requests) -> scores`` (one :class:`Scores` per :class:`ScoreRequest`). A request
names a record, a view of its images, optionally the prompt and system text to ask instead of the
record's, an answer prefix, how many answers, where to stop, how to sample and whether
log-probabilities are wanted. SeVa is "answer each record under two views"; CSR's sentence search
is "continue these prefixes, ``n`` proposals each, stop at a sentence end, with
log-probabilities"; a self-feedback strategy asks its own probe and scores fixed texts. Every
backend that serves the contract runs every strategy: ``seva_plugin.testing`` checks a backend
against these rules, and ``seva_plugin.rendering`` renders prompts and pixels as training does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from seva_plugin.errors import ConfigError, show
from seva_plugin.pipeline.records import IMAGE_TOKEN, LoadedRecord

if TYPE_CHECKING:
    from seva_plugin.interfaces import Augmenter

FinishReason = Literal["eos", "stop", "length"]


class NotServed(ConfigError, NotImplementedError):
    """A backend was asked for a part of the contract it does not serve (``score``): a setup
    problem, so the build stops instead of rejecting every record."""


@dataclass(frozen=True, eq=False)
class View:
    """What the model sees of a record's images: the clean images (``augmenter=None``) or an
    augmenter's output. ``id`` is explicit and seeds the augmenter's generator
    (``view_generator(record.seed, view.id, image_index)``), so the same view can be rebuilt
    anywhere: another batch, another worker, a resume, the gallery."""

    id: int = 0
    augmenter: Augmenter | None = None

    @property
    def clean(self) -> bool:
        return self.augmenter is None

    def key(self) -> tuple[int, int]:
        """Equal for the same id and the same augmenter object (compare live views only)."""
        return self.id, id(self.augmenter)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, View) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())


CLEAN = View()


def check_sampling(temperature: float, top_p: float, where: str = "sampling") -> None:
    """The one rule for sampling settings, wherever they are set (``where`` names the config section):
    ``temperature`` 0 (greedy) or positive, ``top_p`` in (0, 1]."""
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not math.isfinite(temperature) or temperature < 0:
        raise ConfigError(f"{where}.temperature must be 0 (greedy decoding) or a positive number, got {show(temperature)}.")
    if isinstance(top_p, bool) or not isinstance(top_p, int | float) or not 0 < top_p <= 1:
        raise ConfigError(f"{where}.top_p must be in (0, 1], got {show(top_p)}.")


@dataclass(frozen=True)
class Sampling:
    """Sampling settings. ``temperature`` and ``top_p`` shape the distribution tokens are drawn from
    (temperature 0 is greedy decoding, on every backend); log-probabilities are always those of the
    unscaled model."""

    temperature: float = 1.0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        check_sampling(self.temperature, self.top_p)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def _check_prompt(record: LoadedRecord, prompt: str | None, what: str) -> None:
    if prompt is not None and prompt.count(IMAGE_TOKEN) != len(record.images):
        raise ConfigError(
            f"{what}.prompt must hold one {IMAGE_TOKEN} marker per image of record '{record.id}' ({len(record.images)}), "
            f"got {prompt.count(IMAGE_TOKEN)} in {show(prompt)}."
        )


@dataclass
class GenerationRequest:
    """Answer ``record`` under ``view``.

    - ``prompt``, ``system``: the user turn (with one ``<image>`` marker per image of the record)
      and system text to ask instead of the record's prompt and the template's default system.
      ``None``: the record's prompt, the template's system. Either way the prompt is rendered as
      training renders it (the build's ``template``).
    - ``prefix``: answer text already written; the answers continue it (and do not repeat it). It is
      tokenized as training tokenizes a response.
    - ``n``: how many answers to draw (``n > 1`` needs sampling; asking for it greedily is a
      ``ConfigError``, which stops the build, while any other exception becomes a per-record reject).
    - ``stop``: an answer ends right after the first of these strings in its *new* text (the prefix
      does not count), which stays in its text; when the string ends inside a token, the text is
      cut there and that whole token is in ``token_ids`` and ``logprobs``.
    - ``max_new_tokens``, ``sampling``: ``None`` takes the backend's configured value
      (``sampling=None`` with the backend's default ``do_sample: false`` is greedy decoding).
    - ``seed``: sampled answer ``k`` is a function of ``sample_seed(seed, k)``, never of batch
      layout, order or resume. ``None``: the record's seed.
    - ``logprobs``: return each generated token's log-probability.

    Every backend decodes exactly what is asked: nothing from the model's ``generation_config``
    (no penalties, suppressed tokens, beams or sampling defaults); an answer ends at the template's
    stop tokens (what training teaches the model to end with); a sampled answer never contains
    special tokens other than those (an image placeholder fed back as a prefix would break the
    image-token count).
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
    prompt: str | None = None
    system: str | None = None

    def __post_init__(self) -> None:
        self.stop = tuple(self.stop)
        if not isinstance(self.n, int) or self.n < 1:
            raise ConfigError(f"GenerationRequest.n must be a positive integer, got {show(self.n)}.")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ConfigError(f"GenerationRequest.max_new_tokens must be positive (or None), got {show(self.max_new_tokens)}.")
        if any(not s for s in self.stop):
            raise ConfigError("GenerationRequest.stop strings must not be empty.")
        _check_prompt(self.record, self.prompt, "GenerationRequest")

    @property
    def sampling_seed(self) -> int:
        return self.record.seed if self.seed is None else self.seed

    @property
    def user_prompt(self) -> str:
        """The user turn to render: ``prompt``, else the record's."""
        return self.record.record.prompt if self.prompt is None else self.prompt

    def resolve_sampling(self, default: Sampling | None) -> Sampling | None:
        """How to draw the answers: the request's ``sampling``, else the backend's ``default``;
        ``None`` is greedy (so is temperature 0). ``n > 1`` greedily is a ``ConfigError``."""
        sampling = self.sampling if self.sampling is not None else default
        if sampling is not None and sampling.greedy:
            sampling = None
        if sampling is None and self.n > 1:
            raise ConfigError("a request for n > 1 answers needs sampling with a positive temperature (backend.do_sample or the request's sampling).")
        return sampling


@dataclass(frozen=True)
class Completion:
    """One answer: its text (a continuation of the prefix; an ending end-of-sequence token is not in
    it), why it ended (``eos``: the model ended it; ``stop``: a stop string; ``length``:
    ``max_new_tokens``), its generated token ids (an ending end-of-sequence token included) and,
    when asked for, each one's log-probability under the model's unscaled distribution."""

    text: str
    finish_reason: FinishReason
    token_ids: list[int]
    logprobs: list[float] | None = None


Answer = list[Completion]
"""The ``n`` completions of one request, in order (completion ``k`` drawn with ``sample_seed(seed, k)``)."""


@dataclass
class ScoreRequest:
    """Score the fixed response ``text`` for ``record`` under ``view``, after the answer ``prefix``
    (``prompt`` and ``system`` as in :class:`GenerationRequest`). The response ``prefix + text`` is
    tokenized as training tokenizes a response; the tokens after the prefix's own are ``text``'s
    (where the prefix's last token merges with the text's first, that token is the text's)."""

    record: LoadedRecord
    view: View
    text: str
    prefix: str = ""
    prompt: str | None = None
    system: str | None = None

    def __post_init__(self) -> None:
        if not self.text:
            raise ConfigError("ScoreRequest.text must not be empty.")
        _check_prompt(self.record, self.prompt, "ScoreRequest")

    @property
    def user_prompt(self) -> str:
        return self.record.record.prompt if self.prompt is None else self.prompt


@dataclass(frozen=True)
class Scores:
    """``text``'s token ids and each one's log-probability given everything before it (teacher
    forcing), under the unscaled model."""

    token_ids: list[int]
    logprobs: list[float]

    @property
    def total(self) -> float:
        return sum(self.logprobs)

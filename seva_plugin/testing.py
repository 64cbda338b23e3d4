"""The generation contract's conformance kit: run its rules against any backend, in pytest.

Subclass :class:`BackendContract` in a test module; pytest collects every rule as a test::

    from seva_plugin.testing import BackendContract

    class TestMyBackend(BackendContract):
        template = "llava"  # the build's template for the model

        @pytest.fixture(scope="class")
        @classmethod
        def model(cls, tmp_path_factory):  # a small model folder (seva_plugin.dev.tiny_models builds offline twins)
            from seva_plugin.dev.tiny_models import build_tiny_llava
            return build_tiny_llava(tmp_path_factory.mktemp("llava"), seed=0)

        @classmethod
        def make_backend(cls, model):  # greedy by default, float32
            return MyBackend(model=model, template=cls.template, max_new_tokens=12)

The rules: answers in request order whatever the batch; ``n`` answers, answer ``k`` a function of
``(seed, k)`` alone; temperature 0 is greedy and ``n > 1`` greedily is refused; stop strings end the
new text only; prefixes are continued; log-probabilities only when asked, the unscaled model's;
scores as the teacher-forced log-probabilities of the text (if the backend scores); special tokens
never sampled; nothing from the checkpoint's ``generation_config.json``; prompts rendered as the
build's template renders them (the ``hf`` backend's answers and scores; ``reference = False`` skips it).
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from seva_plugin.contract import CLEAN, Answer, Completion, GenerationRequest, Sampling, ScoreRequest, Scores, View
from seva_plugin.errors import ConfigError
from seva_plugin.interfaces import Backend
from seva_plugin.pipeline.records import LoadedRecord, PromptRecord
from seva_plugin.pipeline.views import record_seed
from seva_plugin.rendering import Renderer

__all__ = ["HOSTILE_GENERATION_CONFIG", "BackendContract", "hostile_copy"]

QUESTIONS = ("<image>Describe the image.", "<image>What colour is the square?", "<image>Where is the square?")
# What real checkpoints ship in generation_config.json, pushed to extremes (the stop token is set in hostile_copy).
HOSTILE_GENERATION_CONFIG: dict[str, Any] = {
    "do_sample": True,
    "temperature": 0.3,
    "top_k": 3,
    "top_p": 0.5,
    "repetition_penalty": 1.5,
    "no_repeat_ngram_size": 2,
    "num_beams": 3,
    "min_new_tokens": 4,
}


def hostile_copy(model: str, dest: str, suppress: list[int], eos: int) -> str:
    """A copy of the model folder ``model`` whose generation_config.json asks for penalties, sampling,
    beams, suppressed tokens (``suppress``) and another end-of-sequence token (``eos``)."""
    import json

    shutil.copytree(model, dest, dirs_exist_ok=True)
    path = os.path.join(dest, "generation_config.json")
    shipped: dict[str, Any] = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            shipped = json.load(fh)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({**shipped, **HOSTILE_GENERATION_CONFIG, "suppress_tokens": suppress, "eos_token_id": eos}, fh)
    return dest


def same(a: list[Answer], b: list[Answer]) -> bool:
    """Equal texts, finish reasons and token ids (log-probs compared separately, to a tolerance)."""
    return [[(c.text, c.finish_reason, c.token_ids) for c in x] for x in a] == [[(c.text, c.finish_reason, c.token_ids) for c in x] for x in b]


class BackendContract:
    """The contract's rules as tests; see the module docstring. Override ``make_backend`` and the
    ``model`` fixture; ``render_keys`` are the LLaMA-Factory keys the backend is given
    (``image_max_pixels``, ...), for the kit's own renderer and the ``hf`` reference."""

    template: ClassVar[str] = "llava"
    render_keys: ClassVar[dict[str, Any]] = {}
    tolerance: ClassVar[float] = 1e-4  # log-probabilities (float32)
    reference: ClassVar[bool] = True  # compare with the hf backend (same model, float32)

    @classmethod
    def make_backend(cls, model: str) -> Backend:
        raise NotImplementedError("define the classmethod make_backend(model) in your BackendContract subclass")

    @classmethod
    def close_backend(cls, backend: Backend) -> None:
        backend.close()

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls) -> str:
        raise NotImplementedError("define a class-scoped `model` fixture in your BackendContract subclass")

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls, model: str) -> Iterator[Backend]:
        backend = cls.make_backend(model)
        yield backend
        cls.close_backend(backend)

    @pytest.fixture(scope="class")
    @classmethod
    def renderer(cls, model: str) -> Renderer:
        return Renderer.load(model, cls.template, **cls.render_keys)

    @pytest.fixture(scope="class")
    @classmethod
    def records(cls, tmp_path_factory: pytest.TempPathFactory) -> list[LoadedRecord]:
        from PIL import Image

        folder = tmp_path_factory.mktemp("contract_images")
        out = []
        for i, prompt in enumerate(QUESTIONS):
            img = Image.new("RGB", (48 + 8 * i, 40), (250, 250, 250))
            img.paste(((220, 30, 30), (30, 180, 60), (40, 60, 220))[i], (8 + i, 8, 30 + i, 30))
            path = str(folder / f"r{i}.png")
            img.save(path)
            out.append(LoadedRecord(PromptRecord(f"r{i}", prompt, [path]), [img], record_seed(0, f"r{i}")))
        return out

    @pytest.fixture(scope="class")
    @classmethod
    def noised(cls) -> View:
        from seva_plugin.plugins.augmenters.diffusion_noise import DiffusionNoise

        return View(1, DiffusionNoise(step=800))

    # -- order, n, seeds ---------------------------------------------------------------------
    def test_answers_come_in_request_order_whatever_the_batch(self, backend: Backend, records: list[LoadedRecord], noised: View) -> None:
        a, b, c = records
        asked = [GenerationRequest(a), GenerationRequest(b, noised), GenerationRequest(c, prefix="The"), GenerationRequest(a, noised)]
        together = backend.generate(asked)
        assert len(together) == len(asked) and all(len(x) == 1 for x in together)
        assert same(together, [backend.generate([r])[0] for r in asked])
        assert same(backend.generate(asked[::-1]), together[::-1])
        assert backend.generate([]) == []

    def test_answer_k_depends_on_seed_and_k_alone(self, backend: Backend, records: list[LoadedRecord]) -> None:
        a, b, _ = records
        ask = GenerationRequest(a, n=3, max_new_tokens=6, sampling=Sampling(1.0, 0.9), seed=7)
        alone = backend.generate([ask])[0]
        assert len(alone) == 3 and all(isinstance(x, Completion) for x in alone)
        crowd = backend.generate([GenerationRequest(b, n=2, sampling=Sampling(0.7)), ask, GenerationRequest(a)])[1]
        fewer = backend.generate([GenerationRequest(a, n=2, max_new_tokens=6, sampling=Sampling(1.0, 0.9), seed=7)])[0]
        assert same([crowd], [alone]) and same([fewer], [alone[:2]])
        other = backend.generate([GenerationRequest(a, n=3, max_new_tokens=6, sampling=Sampling(1.0, 0.9), seed=8)])[0]
        assert [c.text for c in other] != [c.text for c in alone]  # another seed, other answers

    def test_greedy_is_refused_for_n_above_one_and_temperature_zero_is_greedy(self, backend: Backend, records: list[LoadedRecord]) -> None:
        record = records[0]
        for sampling in (None, Sampling(0.0)):
            with pytest.raises(ConfigError, match="n > 1"):
                backend.generate([GenerationRequest(record, n=2, sampling=sampling)])
        assert same(backend.generate([GenerationRequest(record, sampling=Sampling(0.0, 0.5))]), backend.generate([GenerationRequest(record)]))

    # -- stop strings, prefixes, lengths -------------------------------------------------------
    def test_stop_strings_end_the_new_text_only(self, backend: Backend, renderer: Renderer, records: list[LoadedRecord]) -> None:
        sampled = [GenerationRequest(r, n=4, max_new_tokens=12, sampling=Sampling(1.0), seed=3) for r in records]
        common = Counter(ch for a in backend.generate(sampled) for c in a for ch in c.text if not ch.isspace()).most_common(1)
        stop = common[0][0] if common else "e"
        asked = [GenerationRequest(r, prefix=p, n=4, stop=(stop,), max_new_tokens=12, sampling=Sampling(1.0), seed=3) for r in records for p in ("", stop * 2)]
        stopped = 0
        for request, answer in zip(asked, backend.generate(asked), strict=True):
            prefix_ids = renderer.answer_ids(request.prefix)
            for c in answer:
                if c.finish_reason == "stop":
                    stopped += 1
                    assert c.text.endswith(stop) and stop not in c.text[: -len(stop)], c.text  # cut right after its first occurrence
                    assert stop in renderer.continuation(prefix_ids, c.token_ids) and stop not in renderer.continuation(prefix_ids, c.token_ids[:-1])
                else:
                    assert stop not in c.text, (c.text, c.finish_reason)
        assert stopped > 0, f"no answer ended at {stop!r}: the rule was not exercised"

    def test_prefixes_are_continued_and_lengths_kept(self, backend: Backend, renderer: Renderer, records: list[LoadedRecord]) -> None:
        """A greedy answer after prefix ``base``, asked again with its first ``k`` tokens' text added to
        the prefix, goes on with its remaining tokens and log-probs (where that text tokenizes back to them)."""
        asked = [GenerationRequest(r, prefix=base, max_new_tokens=8, logprobs=True) for r in records for base in ("", "The", "It is")]
        continued = 0
        for request, (full,) in zip(asked, backend.generate(asked), strict=True):
            assert len(full.token_ids) <= 8 and (full.finish_reason != "length" or len(full.token_ids) == 8)
            base_ids = renderer.answer_ids(request.prefix)
            k = next((k for k in (3, 2, 1) if k < len(full.token_ids) and self._round_trips(renderer, request.prefix, base_ids, full.token_ids[:k])), 0)
            if not k:
                continue  # no head of the answer tokenizes back to its own ids: another input
            prefix = request.prefix + renderer.continuation(base_ids, full.token_ids[:k])
            (rest,) = backend.generate([GenerationRequest(request.record, prefix=prefix, max_new_tokens=8 - k, logprobs=True)])[0]
            continued += 1
            assert rest.token_ids == full.token_ids[k:] and prefix + rest.text == request.prefix + full.text
            assert rest.logprobs is not None and full.logprobs is not None
            assert _close(rest.logprobs, full.logprobs[k:], self.tolerance)
        assert continued > 0, "no greedy answer's first tokens tokenized back to themselves: the rule was not exercised"

    @staticmethod
    def _round_trips(renderer: Renderer, base: str, base_ids: list[int], head: list[int]) -> bool:
        return renderer.answer_ids(base + renderer.continuation(base_ids, head)) == base_ids + head

    # -- log-probabilities and scores ----------------------------------------------------------
    def test_logprobs_only_when_asked_and_of_the_unscaled_model(self, backend: Backend, records: list[LoadedRecord]) -> None:
        (plain,) = backend.generate([GenerationRequest(records[0], max_new_tokens=6)])[0]
        assert plain.logprobs is None and plain.token_ids
        hot = backend.generate([GenerationRequest(r, n=2, max_new_tokens=6, sampling=Sampling(2.0), seed=5, logprobs=True) for r in records])
        cold = backend.generate([GenerationRequest(r, n=2, max_new_tokens=6, sampling=Sampling(0.3), seed=5, logprobs=True) for r in records])
        for c in [c for a in hot + cold for c in a]:
            assert c.logprobs is not None and len(c.logprobs) == len(c.token_ids) and all(lp <= 0 for lp in c.logprobs)
        if not backend.can_score():
            return
        checked = self._check_against_scores(backend, records, hot + cold)
        assert checked > 0, "no sampled answer's text tokenized back to its ids: the log-probs were not compared with scores"

    def _check_against_scores(self, backend: Backend, records: list[LoadedRecord], answers: list[Answer]) -> int:
        """Compare log-probs with teacher-forced scores of the same tokens (where the text gives them back)."""
        asked = [(c, ScoreRequest(r, CLEAN, c.text)) for r, a in zip(records * 2, answers, strict=True) for c in a if c.text.strip()]
        scores = backend.score([s for _, s in asked])
        checked = 0
        for (c, _), s in zip(asked, scores, strict=True):
            n = len(s.token_ids)
            if c.token_ids[:n] == s.token_ids and c.logprobs is not None:
                checked += 1
                assert max(abs(x - y) for x, y in zip(c.logprobs[:n], s.logprobs, strict=True)) < self.tolerance
        return checked

    def test_scores_are_teacher_forced_and_follow_prompt_system_view(
        self, backend: Backend, renderer: Renderer, records: list[LoadedRecord], noised: View
    ) -> None:
        record = records[1]
        if not backend.can_score():
            with pytest.raises(ConfigError):
                backend.score([ScoreRequest(record, CLEAN, "Red.")])
            return
        asked = [
            ScoreRequest(record, CLEAN, " red square", prefix="A"),
            ScoreRequest(record, CLEAN, " red square", prefix="A", prompt=record.record.prompt),
            ScoreRequest(record, noised, " red square", prefix="A"),
            ScoreRequest(record, CLEAN, " red square", prefix="A", prompt="<image>Is there a dog?"),
            ScoreRequest(record, CLEAN, " red square", prefix="A", system="You answer in French."),
            ScoreRequest(records[0], CLEAN, "Yes"),
        ]
        got = backend.score(asked)
        assert len(got) == len(asked) and all(isinstance(s, Scores) for s in got) and backend.score([]) == []
        for request, s in zip(asked, got, strict=True):
            assert s.token_ids == renderer.score_ids(request.prefix, request.text)[1] and len(s.logprobs) == len(s.token_ids)
            assert all(lp <= 0 for lp in s.logprobs)
        alone = [backend.score([r])[0] for r in asked]
        assert all(_close(a.logprobs, b.logprobs, self.tolerance) for a, b in zip(alone, got, strict=True))
        assert _close(got[0].logprobs, got[1].logprobs, self.tolerance)  # the record's prompt, said or not
        assert all(not _close(got[0].logprobs, got[i].logprobs, 1e-6) for i in (2, 3, 4))  # view, prompt and system count

    # -- what is never sampled, what is never read ---------------------------------------------
    def test_special_tokens_are_never_sampled(self, backend: Backend, renderer: Renderer, records: list[LoadedRecord], model: str) -> None:
        from seva_plugin.plugins.backends.loading import config_json

        banned = set(renderer.banned_token_ids(config_json(model) or {}))
        answers = backend.generate([GenerationRequest(r, n=8, max_new_tokens=24, sampling=Sampling(2.0), seed=9) for r in records])
        drawn = [t for a in answers for c in a for t in c.token_ids]
        assert len(drawn) > 50 and not banned & set(drawn), sorted(banned & set(drawn))

    def test_prompts_render_as_the_builds_template(self, backend: Backend, records: list[LoadedRecord], model: str, noised: View) -> None:
        from seva_plugin.plugins.backends.hf import HfBackend

        if not self.reference or isinstance(backend, HfBackend):
            pytest.skip("no reference to compare with")
        hf = HfBackend(model, self.template, **self.render_keys)
        try:
            asked = [GenerationRequest(r, view, prefix=p, max_new_tokens=8) for r in records for view in (CLEAN, noised) for p in ("", "It")]
            assert same(backend.generate(asked), hf.generate(asked))
            if backend.can_score():
                scored = [ScoreRequest(r, view, " a red square.", system=s) for r in records for view in (CLEAN, noised) for s in (None, "Be brief.")]
                assert all(_close(a.logprobs, b.logprobs, self.tolerance) for a, b in zip(backend.score(scored), hf.score(scored), strict=True))
        finally:
            hf.close()

    def test_the_checkpoints_generation_config_is_never_read(
        self, backend: Backend, renderer: Renderer, records: list[LoadedRecord], model: str, noised: View, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        if not os.path.isdir(model):
            pytest.skip("the model is not a local folder")
        asked = [GenerationRequest(r, view, max_new_tokens=10, logprobs=lp) for r in records for view in (CLEAN, noised) for lp in (False, True)]
        clean = backend.generate(asked)
        common = Counter(t for a in clean for c in a for t in c.token_ids).most_common(2)
        hostile = self.make_backend(hostile_copy(model, str(tmp_path_factory.mktemp("hostile") / "model"), [common[0][0]], common[-1][0]))
        try:
            assert same(hostile.generate(asked), clean)
        finally:
            self.close_backend(hostile)


def _close(a: list[float], b: list[float], tolerance: float) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))

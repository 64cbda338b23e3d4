"""``seva_plugin.rendering``, the API a backend renders with: a request's prompt as training encodes it,
its stop and banned tokens, scored-text tokens, token types over a prefix, and the shared cut rule."""

from __future__ import annotations

import pytest

from helpers import make_images
from seva_plugin import CLEAN, GenerationRequest, LoadedRecord, PromptRecord, ScoreRequest, View
from seva_plugin.pipeline.images import load_rgb
from seva_plugin.rendering import Renderer, token_types


@pytest.fixture(scope="module")
def renderer(tiny_llava):
    return Renderer.load(tiny_llava, "llava")


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rendering")
    (name,) = make_images(folder, 1)
    path = str(folder / name)
    return LoadedRecord(PromptRecord("r0", "<image>What colour is the square?", [path]), [load_rgb(path)], 5)


def test_a_requests_prompt_is_what_training_encodes(renderer, record):
    from llamafactory.data.template import TEMPLATES

    own = renderer.render(GenerationRequest(record))
    assert own.ids == renderer.prompt_ids(record.record.prompt, record.images)
    assert "What colour is the square?" in own.text and TEMPLATES["llava"].default_system in own.text
    asked = renderer.render(ScoreRequest(record, CLEAN, "Yes", prompt="<image>Is there a dog?", system="You are terse."))
    assert "Is there a dog?" in asked.text and "You are terse." in asked.text and TEMPLATES["llava"].default_system not in asked.text
    assert asked.ids == renderer.prompt_ids("<image>Is there a dog?", record.images, "You are terse.")
    assert renderer.render(GenerationRequest(record, system="")).ids == own.ids  # empty: the template's default, as in LLaMA-Factory


def test_stop_and_banned_tokens(renderer, tiny_llava):
    from seva_plugin.plugins.backends.loading import config_json

    stop = renderer.stop_token_ids
    assert stop == renderer.template.get_stop_token_ids(renderer.tokenizer) and renderer.tokenizer.eos_token_id in stop
    banned = renderer.banned_token_ids(config_json(tiny_llava))
    assert renderer.tokenizer.convert_tokens_to_ids("<image>") in banned and not set(stop) & set(banned)


def test_score_ids_split_the_response_as_training_tokenizes_it(renderer):
    for prefix, text in (("", "A red square."), ("The square", " is red."), ("The squ", "are is red.")):
        head, tail = renderer.score_ids(prefix, text)
        assert head + tail == renderer.answer_ids(prefix + text)  # the whole response, tokenized once
        assert tail and renderer.continuation(head, tail).endswith(text[-3:])
    head, tail = renderer.score_ids("The squ", "are is red.")
    assert len(head) < len(renderer.answer_ids("The squ"))  # the token the prefix and text share is the text's


def test_token_types_cover_any_ids_a_prefix_included(tiny_llava):
    import torch
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_llava)
    image = config.image_token_id
    ids = torch.tensor([[1, image, image, 5, 6, 7]])
    assert token_types(ids, config).tolist() == [[0, 1, 1, 0, 0, 0]]
    assert token_types(ids, {"image_token_id": image, "video_token_id": 7}).tolist() == [[0, 1, 1, 0, 0, 2]]


def test_the_shared_cut_rule(renderer):
    eos = renderer.stop_token_ids[0]
    ids = renderer.answer_ids("It is red. Then blue.")
    done = renderer.completion(ids + [eos, 0, 0], [-1.0] * (len(ids) + 3), (), [])
    assert (done.text, done.finish_reason, done.token_ids, done.logprobs) == ("It is red. Then blue.", "eos", ids + [eos], [-1.0] * (len(ids) + 1))
    stopped = renderer.completion(ids, None, (".",), [])
    assert stopped.text == "It is red." and stopped.finish_reason == "stop" and stopped.logprobs is None
    assert renderer.continuation([], stopped.token_ids).endswith(".") and "." not in renderer.continuation([], stopped.token_ids[:-1])
    assert renderer.completion(ids[:2], None, (".",), []).finish_reason == "length"


def test_the_cut_skips_only_tokens_that_cannot_complete_a_stop(renderer):
    """The stopping token is searched among the tokens that can complete a stop; the cut is the one
    a scan of every token finds, for random rows after random prefixes."""
    import random

    from seva_plugin.contract import Completion

    def plain(row, stops, prefix_ids):  # the rule, every token tried
        text = renderer.continuation(prefix_ids, row)
        at, stop = min((text.find(s), s) for s in stops if s in text)
        m = next(m for m in range(1, len(row) + 1) if stop in renderer.continuation(prefix_ids, row[:m]))
        return Completion(text[: at + len(stop)], "stop", row[:m], None)

    assert renderer.stop_candidates(("é",)) is None and renderer.stop_candidates(()) is None
    table = renderer.stop_candidates((".", "ab"))
    vocab = len(renderer.tokenizer)
    assert len(table) == vocab and 0 < sum(table) < vocab
    rng = random.Random(1)
    eos = set(renderer.stop_token_ids)
    dots = [i for i in range(vocab) if "." in renderer.tokenizer.decode([i])]
    cut = 0
    for _ in range(200):
        row = [rng.choice(dots) if rng.random() < 0.05 else rng.randrange(vocab) for _ in range(40)]
        row = [t for t in row if t not in eos]
        prefix = renderer.answer_ids(rng.choice(["", "A cat", "It is a"]))
        stops = rng.choice([(".", "ab"), ("ab",), (".",)])
        done = renderer.completion(row, None, stops, prefix)
        if done.finish_reason == "stop":
            assert done == plain(row, stops, prefix)
            cut += 1
    assert cut > 20


def test_prompts_are_never_mixed_across_views_in_one_call(tiny_llava, record):
    """A tensor-space view reuses the clean inputs made in the same call only for the same prompt."""
    from seva_plugin.plugins.augmenters.diffusion_noise import DiffusionNoise
    from seva_plugin.plugins.backends.hf import HfBackend

    backend = HfBackend(tiny_llava, "llava", max_new_tokens=6)
    noised = View(1, DiffusionNoise(step=800))
    other = GenerationRequest(record, noised, prompt="<image>Is there a dog?")
    together = backend.model_inputs([GenerationRequest(record), other])
    alone = backend.model_inputs([other])
    assert together[0][1] == alone[0][0] != together[0][0]

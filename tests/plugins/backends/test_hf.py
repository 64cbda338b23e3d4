"""Backend ``hf``: the contract's conformance kit (LLaVA and Qwen2-VL twins), and what is checked
before any model loads (sampling settings, ``max_new_tokens`` against the context)."""

from __future__ import annotations

import json
import os

import pytest

from helpers import make_images
from seva_plugin.errors import ConfigError
from seva_plugin.pipeline.build import Build, build
from seva_plugin.plugins.backends.hf import HfBackend
from seva_plugin.testing import BackendContract, hostile_copy


class TestHfOnLlava(BackendContract):
    template = "llava"

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls, tiny_llava):
        return tiny_llava

    @classmethod
    def make_backend(cls, model):
        return HfBackend(model, cls.template, max_new_tokens=12)


class TestHfOnQwen2VL(BackendContract):
    """M-RoPE positions and ``mm_token_type_ids`` over prefixes and scored texts."""

    template = "qwen2_vl"
    render_keys = {"image_max_pixels": 3136}

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls, tmp_path_factory):
        from seva_plugin.dev.tiny_models import build_tiny_qwen2_vl

        return build_tiny_qwen2_vl(tmp_path_factory.mktemp("models") / "qwen2_vl", seed=0)

    @classmethod
    def make_backend(cls, model):
        return HfBackend(model, cls.template, max_new_tokens=12, **cls.render_keys)


def test_a_hostile_generation_config_changes_no_seva_data(build_config, tmp_path):
    """A checkpoint whose generation_config.json asks for penalties, sampling, beams, suppressed tokens
    and another stop token gives byte-identical SeVa data (greedy, clean + noised views)."""
    clean = build(build_config, progress=False)
    rows = [json.loads(line) for line in open(clean.data_file)]
    ids = HfBackend(build_config["model"], "llava").renderer.answer_ids(" ".join(r["chosen"]["value"] for r in rows))
    common = max(set(ids), key=ids.count)
    hostile = hostile_copy(build_config["model"], str(tmp_path / "hostile"), [common], ids[0])
    output = {**build_config["output"], "dataset_dir": str(tmp_path / "hostile_data")}
    again = build({**build_config, "model": hostile, "output": output}, progress=False)
    assert open(again.data_file, "rb").read() == open(clean.data_file, "rb").read()
    assert clean.kept >= 2


def test_do_sample_with_temperature_zero_is_greedy(tiny_llava, tmp_path):
    from seva_plugin.interfaces import GenerationRequest
    from seva_plugin.pipeline.images import load_rgb
    from seva_plugin.pipeline.records import LoadedRecord, PromptRecord

    paths = [str(tmp_path / n) for n in make_images(tmp_path, 3)]
    records = [LoadedRecord(PromptRecord(f"r{i}", "<image>Describe.", [p]), [load_rgb(p)], i) for i, p in enumerate(paths)]
    requests = [GenerationRequest(r) for r in records]
    greedy = HfBackend(tiny_llava, "llava", max_new_tokens=8).generate(requests)
    zero = HfBackend(tiny_llava, "llava", max_new_tokens=8, do_sample=True, temperature=0).generate(requests)
    assert [[c.token_ids for c in a] for a in zero] == [[c.token_ids for c in a] for a in greedy]


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"temperature": -0.5}, r"backend.temperature must be 0 \(greedy decoding\) or a positive number, got -0.5"),
        ({"top_p": 0}, r"backend.top_p must be in \(0, 1\], got 0"),
        ({"top_p": 1.5}, r"backend.top_p must be in \(0, 1\], got 1.5"),
        ({"max_new_tokens": 10**9}, r"backend.max_new_tokens is 1,000,000,000, but the model's context of .* holds \d[\d,]* tokens"),
    ],
)
def test_bad_decoding_settings_are_refused_before_any_model_loads(build_config, keys, message, monkeypatch):
    monkeypatch.setattr(HfBackend, "hf_model", property(lambda self: pytest.fail("the model was loaded")))
    with pytest.raises(ConfigError, match=message):
        Build({**build_config, "backend": {**build_config["backend"], **keys}})


def test_the_manifest_names_the_engine(build_config):
    result = build({**build_config, "limit": 2}, progress=False)
    engine = json.load(open(result.manifest_file))["engine"]
    assert engine == {"name": "hf", "engine": "transformers", "version": engine["version"], "dtype": "float32", "device": "cpu"}
    assert engine["version"].count(".") >= 1 and os.path.isfile(result.data_file)


def test_one_token_texts_after_one_head_are_scored_from_one_row(tiny_llava, tmp_path, monkeypatch):
    """RLAIF-V's probes: "yes", "Yes", "no", "No" after one question are read from one row's
    next-token distribution (the official labeler's one step), not one row each; each gets what it
    gets scored alone. Texts of more tokens, another prefix or another view keep their own rows."""
    from PIL import Image

    from seva_plugin.contract import CLEAN, ScoreRequest, View
    from seva_plugin.pipeline.records import LoadedRecord, PromptRecord
    from seva_plugin.pipeline.views import record_seed
    from seva_plugin.plugins.augmenters.diffusion_noise import DiffusionNoise
    from seva_plugin.plugins.backends import hf_inputs

    names = make_images(tmp_path, 2)
    question = "<image>Is there a red square?"
    records = [
        LoadedRecord(PromptRecord(f"p{i}", question, [str(tmp_path / n)]), [Image.open(tmp_path / n).convert("RGB")], record_seed(0, f"p{i}"))
        for i, n in enumerate(names)
    ]
    noised = View(1, DiffusionNoise())
    requests = [ScoreRequest(r, CLEAN, w) for r in records for w in ("yes", "Yes", "no", "No")]
    requests += [ScoreRequest(records[0], CLEAN, "Yes, it is."), ScoreRequest(records[0], CLEAN, "yes", prefix="No, "), ScoreRequest(records[0], noised, "yes")]
    backend = HfBackend(model=tiny_llava, template="llava")
    split = [backend.renderer.score_ids(r.prefix, r.text) for r in requests]
    assert all(len(text) == 1 for _, text in split[:8]) and len(split[8][1]) > 1 and split[9][0] and len(split[9][1]) == 1
    assert hf_inputs.shared_heads(requests, split) == [0, 0, 0, 0, 4, 4, 4, 4, 8, 9, 10]
    rows = []
    teacher_forced = hf_inputs.teacher_forced
    monkeypatch.setattr(hf_inputs, "teacher_forced", lambda model, tok, heads, *a: rows.append(len(heads)) or teacher_forced(model, tok, heads, *a))
    together = backend.score(requests)
    assert rows == [5]
    alone = [backend.score([r])[0] for r in requests]
    assert [s.token_ids for s in together] == [s.token_ids for s in alone]
    assert max(abs(x - y) for a, b in zip(together, alone, strict=True) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < 1e-5
    assert len({s.logprobs[0] for s in together[:4]}) == 4  # four words, four different log-probabilities

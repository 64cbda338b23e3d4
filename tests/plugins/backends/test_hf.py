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

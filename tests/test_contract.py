"""The generation contract (``seva_plugin/contract.py``): its types and checks, and a strategy from
outside the package that asks its own prompt and scores texts through the public API alone."""

from __future__ import annotations

import json
import math
import os
import re

import pytest

import seva_plugin
from helpers import REPO, read_jsonl, registered_strategy
from seva_plugin import (
    CLEAN,
    Backend,
    ConfigError,
    GenerationRequest,
    LoadedRecord,
    NotServed,
    Pair,
    PromptRecord,
    Sampling,
    ScoreRequest,
    hookimpl,
)
from seva_plugin.errors import NothingKept
from seva_plugin.pipeline.build import Build, build
from seva_plugin.registry import get_plugin_manager


def loaded(prompt: str = "<image>What is it?", images: int = 1) -> LoadedRecord:
    return LoadedRecord(PromptRecord("r1", prompt, ["x.png"] * images), [object()] * images, 7)


# -- the types ---------------------------------------------------------------------------------
def test_everything_a_plugin_uses_is_exported_from_the_package():
    from seva_plugin import contract, interfaces

    for name in ("Pair", "LoadedRecord", "PromptRecord", "Reject", "RecordError", "ConfigError", "ScoreRequest", "Scores", "Completion", "WriteResult"):
        assert name in seva_plugin.__all__ and name in interfaces.__all__
    for name in ("record_seed", "view_generator", "sample_seed", "check_sampling", "hookimpl"):
        assert callable(getattr(seva_plugin, name))
    assert all(getattr(seva_plugin, n) is getattr(interfaces, n) for n in interfaces.__all__ if n in seva_plugin.__all__)
    assert seva_plugin.Answer == list[contract.Completion]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Sampling(-0.5), r"sampling.temperature must be 0 \(greedy decoding\) or a positive number, got -0.5"),
        (lambda: Sampling(float("nan")), r"sampling.temperature must be 0"),
        (lambda: Sampling(1.0, 0.0), r"sampling.top_p must be in \(0, 1\], got 0.0"),
        (lambda: Sampling(1.0, 1.2), r"sampling.top_p must be in \(0, 1\], got 1.2"),
        (lambda: GenerationRequest(loaded(), n=0), "GenerationRequest.n must be a positive integer, got 0"),
        (lambda: GenerationRequest(loaded(), max_new_tokens=0), "GenerationRequest.max_new_tokens must be positive"),
        (lambda: GenerationRequest(loaded(), stop=("",)), "stop strings must not be empty"),
        (
            lambda: GenerationRequest(loaded(), prompt="Is there a dog?"),
            r"GenerationRequest.prompt must hold one <image> marker per image of record 'r1' \(1\), got 0",
        ),
        (lambda: ScoreRequest(loaded(images=2), CLEAN, "Yes", prompt="<image>Dog?"), r"ScoreRequest.prompt must hold .* of record 'r1' \(2\), got 1"),
        (lambda: ScoreRequest(loaded(), CLEAN, ""), "ScoreRequest.text must not be empty"),
        (lambda: Pair(loaded().record, "a", "b", prompt="no markers"), r"Pair.prompt must hold one <image> marker per image of record 'r1'"),
    ],
)
def test_requests_and_pairs_are_checked_when_made(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_sampling_resolves_the_same_way_for_every_backend():
    default = Sampling(0.7, 0.9)
    assert GenerationRequest(loaded()).resolve_sampling(None) is None  # greedy
    assert GenerationRequest(loaded()).resolve_sampling(default) == default
    assert GenerationRequest(loaded(), sampling=Sampling(0.0)).resolve_sampling(default) is None  # temperature 0 is greedy
    assert GenerationRequest(loaded(), n=3, sampling=Sampling(1.2)).resolve_sampling(None) == Sampling(1.2)
    for request in (GenerationRequest(loaded(), n=2), GenerationRequest(loaded(), n=2, sampling=Sampling(0))):
        with pytest.raises(ConfigError, match="n > 1 answers needs sampling"):
            request.resolve_sampling(None)
    asked = GenerationRequest(loaded(), prompt="<image>Is there a dog?", system="Answer yes or no.")
    assert (asked.user_prompt, GenerationRequest(loaded()).user_prompt) == ("<image>Is there a dog?", "<image>What is it?")


def test_a_pair_carries_the_record_prompt_unless_it_chose_another():
    record = loaded().record
    assert Pair(record, "a", "b").to_json()["prompt"] == "<image>What is it?"
    assert Pair(record, "a", "b", prompt="<image>Describe it.").to_json()["prompt"] == "<image>Describe it."


def test_a_backend_that_cannot_score_says_so():
    class GenerateOnly(Backend):
        name = "generate_only"

        def generate(self, requests):
            return []

    backend = GenerateOnly()
    assert not GenerateOnly.can_score() and backend.describe() == {"name": "generate_only"}
    with pytest.raises(NotServed, match="backend 'generate_only' does not score texts") as error:
        backend.score([ScoreRequest(loaded(), CLEAN, "Yes")])
    assert isinstance(error.value, ConfigError) and isinstance(error.value, NotImplementedError)
    from seva_plugin.plugins.backends.hf import HfBackend

    assert HfBackend.can_score()


# -- a strategy from outside the package (helpers.AskedElsewhere) ------------------------------
def test_a_strategy_asks_its_own_prompt_scores_texts_and_resumes_byte_identical(build_config, asked_elsewhere, tmp_path):
    config = {**build_config, "strategy": asked_elsewhere, "filters": []}
    full = build({**config, "output": {**config["output"], "dataset_dir": str(tmp_path / "full")}}, progress=False)
    rows = read_jsonl(full.data_file)
    assert rows and all(r["conversations"][0]["value"] == "<image>Describe the colours you see." for r in rows)
    assert all(r["scores"]["tokens"] > 0 and math.isfinite(r["scores"]["chosen"]) and r["scores"]["chosen"] < 0 for r in rows)
    # the chosen prompt was the one asked: the same answers as asking that prompt directly
    backend = Build(config).backend
    record = loaded_row(rows[0])
    (direct,) = backend.generate([GenerationRequest(record, prompt="<image>Describe the colours you see.")])[0]
    assert direct.text.strip() == rows[0]["chosen"]["value"].strip()
    # a build stopped after its first batch and resumed writes the same bytes
    resumed = {**config["output"], "dataset_dir": str(tmp_path / "resumed")}
    try:
        build({**config, "limit": 4, "output": resumed}, progress=False)
    except NothingKept:  # the first batch may keep nothing; its journal is what matters
        pass
    again = build({**config, "output": resumed}, progress=False)
    assert again.resumed and open(again.data_file, "rb").read() == open(full.data_file, "rb").read()


def loaded_row(row: dict) -> LoadedRecord:
    """The record behind a written row (its images are outside the dataset_dir: absolute paths)."""
    from seva_plugin import record_seed
    from seva_plugin.pipeline.images import load_rgb

    return LoadedRecord(
        PromptRecord(row["id"], "<image>What colour is the square?", row["images"]), [load_rgb(p) for p in row["images"]], record_seed(0, row["id"])
    )


def test_a_strategy_that_scores_is_refused_with_a_backend_that_cannot(build_config, asked_elsewhere, monkeypatch):
    from seva_plugin.registry import Registry

    class GenerateOnly(Backend):
        name = "generate_only"

        def __init__(self, model, template):
            pass

        def generate(self, requests):
            raise AssertionError("never reached")

    class Plugin:
        @hookimpl
        def register_backends(self, register):
            register(GenerateOnly)

    pm = get_plugin_manager()
    pm.register(Plugin(), name="test-generate-only")
    monkeypatch.setattr("seva_plugin.pipeline.build.get_registry", lambda: Registry(pm))
    try:
        with pytest.raises(ConfigError, match="strategy 'test_asked_elsewhere' scores texts .* which backend 'generate_only' does not serve"):
            Build({**build_config, "strategy": asked_elsewhere, "backend": {"name": "generate_only"}})
    finally:
        pm.unregister(name="test-generate-only")


def test_the_docs_strategy_runs_as_written(build_config, tmp_path):
    """docs/plugins.md's strategy that asks its own prompt and scores texts, executed as it is there."""
    text = open(os.path.join(REPO, "docs", "plugins.md"), encoding="utf-8").read()
    (code,) = re.findall(r"```python\n(@dataclass\nclass ImaginedNegative\(Strategy\):.*?)```", text, re.S)
    namespace: dict = {}
    exec("from dataclasses import dataclass\nfrom seva_plugin import CLEAN, GenerationRequest, Pair, ScoreRequest, Strategy\n" + code, namespace)
    with registered_strategy(namespace["ImaginedNegative"]):
        try:
            result = build({**build_config, "strategy": "imagined_negative", "limit": 4}, progress=False)
        except NothingKept as exc:  # the tiny model's margins decide; the strategy ran either way
            result = exc.result
    journal = read_jsonl(os.path.join(result.dataset_dir, ".seva", f"{result.name}.journal.jsonl"))
    entries = [e for e in journal if e.get("kind") in ("pair", "drop")]
    assert len(entries) == 4 and all("margin" in e.get("scores", {"margin": 0}) for e in entries)
    assert json.load(open(result.manifest_file))["config"]["strategy"] == "imagined_negative"


@pytest.mark.slow
def test_the_outside_strategy_on_ray_workers_writes_the_same_bytes(build_config, asked_elsewhere, tmp_path):
    """Two Ray workers build the same bytes as one process with a strategy from outside the package
    (it reaches the workers by value, as any plugin class the driver resolved)."""
    import shutil
    import sys
    import tempfile

    ray = pytest.importorskip("ray")
    from ray import cloudpickle

    import helpers

    config = {**build_config, "strategy": asked_elsewhere, "filters": [], "limit": 8, "backend": {**build_config["backend"], "batch_size": 2}}
    local = build({**config, "output": {**config["output"], "dataset_dir": str(tmp_path / "local")}}, progress=False)
    cloudpickle.register_pickle_by_value(sys.modules[helpers.__name__])
    temp = tempfile.mkdtemp(prefix="sray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    try:
        output = {**config["output"], "dataset_dir": str(tmp_path / "ray")}
        on_ray = build({**config, "output": output, "ray": {"num_workers": 2, "resources_per_worker": {"CPU": 1}}}, progress=False)
    finally:
        ray.shutdown()
        cloudpickle.unregister_pickle_by_value(sys.modules[helpers.__name__])
        shutil.rmtree(temp, ignore_errors=True)
    assert open(on_ray.data_file, "rb").read() == open(local.data_file, "rb").read() and local.kept > 0
    manifest = json.load(open(on_ray.manifest_file))
    assert manifest["workers"]["ray"] is True and manifest["engine"]["ray"] == ray.__version__
    assert manifest["engine"]["name"] == "hf" and all(w["engine"]["dtype"] == "float32" for w in manifest["workers"]["workers"])  # as each worker resolved it

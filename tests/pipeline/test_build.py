"""A real build with a tiny LLaVA: data, registry, manifest, rejects, filters, determinism."""

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from helpers import make_images, read_jsonl, use_backends
from seva_plugin import hookimpl
from seva_plugin.errors import ConfigError
from seva_plugin.interfaces import GenerationRequest, Strategy
from seva_plugin.pipeline.build import Build, build
from seva_plugin.pipeline.records import Pair
from seva_plugin.registry import get_plugin_manager, get_registry


def test_build_writes_llamafactory_data_registry_and_manifest(build_config, tmp_path):
    result = build(build_config, progress=False)
    rows = read_jsonl(result.data_file)
    assert result.kept == len(rows) == 10 - sum(result.dropped.values())
    row = rows[0]
    assert row["id"] == "p0"
    assert row["conversations"] == [{"from": "human", "value": "<image>What colour is the square?"}]
    assert row["chosen"]["from"] == row["rejected"]["from"] == "gpt"
    assert row["chosen"]["value"] != row["rejected"]["value"]
    assert os.path.isfile(row["images"][0])  # outside dataset_dir: absolute
    assert row["provenance"]["strategy"] == "seva" and row["provenance"]["augment"] == "diffusion_noise"
    info = json.load(open(tmp_path / "data" / "dataset_info.json"))
    assert info["seva_test"]["ranking"] is True and info["seva_test"]["file_name"] == "seva_test.jsonl"
    manifest = json.load(open(result.manifest_file))
    assert manifest["files"]["data"]["sha256"] == hashlib.sha256(open(result.data_file, "rb").read()).hexdigest()
    assert manifest["counts"]["kept"] == result.kept and manifest["counts"]["records"] == 10
    assert manifest["config"]["augment"] == {"name": "diffusion_noise", "step": 800}
    assert manifest["versions"]["llamafactory"] == "0.9.5"


def test_same_config_same_seed_gives_byte_identical_data(build_config, tmp_path):
    first = build(build_config, progress=False)
    again = dict(build_config, output={"dataset_dir": str(tmp_path / "again"), "name": "seva_test"})
    second = build(again, progress=False)
    assert open(first.data_file, "rb").read() == open(second.data_file, "rb").read()
    other_seed = dict(build_config, seed=1, output={"dataset_dir": str(tmp_path / "seed1"), "name": "seva_test"})
    rejected = [r["rejected"]["value"] for r in read_jsonl(first.data_file)]
    assert rejected != [r["rejected"]["value"] for r in read_jsonl(build(other_seed, progress=False).data_file)]


def test_images_inside_dataset_dir_are_relative_and_resolve_like_llamafactory(tiny_llava, tmp_path):
    data = tmp_path / "data"
    make_images(data / "images", 2)
    (data / "p.jsonl").write_text("".join(json.dumps({"id": i, "image": f"images/img00{i}.png", "question": "Colour?"}) + "\n" for i in range(2)))
    cfg = {
        "model": tiny_llava,
        "template": "llava",
        "source": {"file": str(data / "p.jsonl")},
        "backend": {"max_new_tokens": 4},
        "output": {"dataset_dir": str(data), "name": "rel"},
        "filters": [],
    }
    rows = read_jsonl(build(cfg, progress=False).data_file)
    assert [r["images"] for r in rows] == [["images/img000.png"], ["images/img001.png"]]
    assert all(os.path.isfile(os.path.join(data, r["images"][0])) for r in rows)


def test_registry_keeps_other_entries_and_refuses_a_different_one(build_config, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    theirs = {"mine": {"file_name": "mine.json", "formatting": "alpaca", "columns": {"prompt": "q"}}, "seva_test": {"file_name": "other.json"}}
    (data / "dataset_info.json").write_text(json.dumps(theirs))
    with pytest.raises(ConfigError, match="already has a different entry 'seva_test'.*overwrite"):
        Build(build_config)
    assert json.load(open(data / "dataset_info.json")) == theirs  # untouched
    build_config["output"]["overwrite"] = True
    build(build_config, progress=False)
    info = json.load(open(data / "dataset_info.json"))
    assert info["mine"] == theirs["mine"] and info["seva_test"]["file_name"] == "seva_test.jsonl"


def test_bad_records_go_to_rejects_and_the_build_goes_on(build_config, prompts, tmp_path):
    (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (tmp_path / "images" / "zero.png").write_bytes(b"")
    with open(prompts, "a") as fh:
        for row in [
            {"id": "missing", "image": "images/nope.png", "question": "Q?"},
            {"id": "broken", "image": "images/broken.png", "question": "Q?"},
            {"id": "zero", "image": "images/zero.png", "question": "Q?"},
            {"id": "noimage", "question": "Q?"},
            {"id": "p1", "image": "images/img001.png", "question": "duplicate id"},
            {"id": "twomarkers", "image": "images/img001.png", "question": "<image><image>Q?"},
            {"id": "blank", "image": "images/img001.png", "question": ""},
        ]:
            fh.write(json.dumps(row) + "\n")
        fh.write("{oops\n")
    result = build(build_config, progress=False)
    rejects = {r["id"]: r["reason"] for r in read_jsonl(result.rejects_file)}
    assert set(rejects) == {"missing", "broken", "zero", "noimage", "p1", "twomarkers", "blank", "line-18"}
    assert "not found" in rejects["missing"] and "duplicate id" in rejects["p1"] and "not valid JSON" in rejects["line-18"]
    assert result.rejected == {
        "missing_file": 1,
        "not_an_image": 1,
        "empty_file": 1,
        "no_image": 1,
        "duplicate_id": 1,
        "image_count_mismatch": 1,
        "empty_question": 1,
        "bad_json": 1,
    }
    assert result.kept + sum(result.dropped.values()) == 10
    assert "rejected inputs:" in result.summary() and "duplicate_id 1" in result.summary()


@dataclass
class HalfIdentical(Strategy):
    """A test strategy: the real clean answer, with rejected made identical or empty for some records."""

    name = "test_half_identical"

    def make_pairs(self, records, backend, augmenter):
        clean = [a[0].text for a in backend.generate([GenerationRequest(r) for r in records])]
        out = []
        for r, c in zip(records, clean, strict=True):
            n = int(r.id[1:])
            rejected = c + "  </s>" if n % 2 == 0 else ("" if n == 3 else c + " different")
            out.append(Pair(r.record, c, rejected))
        return out


class StrategyPlugin:
    @hookimpl
    def register_strategies(self, register):
        register(HalfIdentical)


@pytest.fixture
def test_strategy():
    pm = get_plugin_manager()
    plugin = StrategyPlugin()
    pm.register(plugin, name="test-strategy")
    get_registry.cache_clear()
    yield
    pm.unregister(plugin)
    get_registry.cache_clear()


def test_filters_drop_identical_after_eos_normalisation_and_empty(build_config, test_strategy):
    build_config["strategy"] = "test_half_identical"
    result = build(build_config, progress=False)
    assert result.dropped == {"identical": 5, "empty_rejected": 1}
    assert [r["id"] for r in read_jsonl(result.data_file)] == ["p1", "p5", "p7", "p9"]
    journal = [json.loads(line) for line in open(os.path.join(result.dataset_dir, ".seva", "seva_test.journal.jsonl"))]
    drops = [e for e in journal if e["kind"] == "drop"]
    assert {e["id"] for e in drops} == {"p0", "p2", "p3", "p4", "p6", "p8"} and all("chosen" in e for e in drops)


def test_config_and_environment_errors_come_before_any_model_loads(build_config, tmp_path, monkeypatch):
    import llamafactory.model

    loads = []  # every load of the weights (the hf backend loads them through LLaMA-Factory's load_model)
    real_load = llamafactory.model.load_model
    monkeypatch.setattr(llamafactory.model, "load_model", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    cases = [
        ({"model": str(tmp_path / "no-model")}, "model path not found"),
        ({"template": "lava"}, "unknown template 'lava'.*Did you mean 'llava'"),
        ({"augment": {"name": "diffusion"}}, "unknown augmenter 'diffusion'"),
        ({"strategy": "sevaa"}, "unknown strategy 'sevaa'.*Did you mean 'seva'"),
        ({"backend": {"name": "hf", "batch": 2}}, "unknown key 'batch' in backend"),
        ({"output": {"dataset_dir": str(tmp_path / "file.txt" / "sub"), "name": "x"}}, "not writable"),
        ({"source": {"file": str(tmp_path / "none.jsonl"), "format": "jsonl"}}, None),
    ]
    (tmp_path / "file.txt").write_text("a file, not a folder")
    for change, message in cases[:-1]:
        with pytest.raises(ConfigError, match=message):
            Build({**build_config, **change})
    # a missing source file is found when the source is first read, still before generation
    b = Build({**build_config, **cases[-1][0]})
    with pytest.raises(ConfigError, match="source file not found"):
        b.run(progress=False)
    assert loads == []  # the model was never loaded


@pytest.mark.slow
def test_cli_build_with_overrides_and_clear_errors(build_config, tmp_path):
    import yaml

    path = tmp_path / "build.yaml"
    path.write_text(yaml.safe_dump(build_config))
    seva = [sys.executable, "-m", "seva_plugin.commands.cli"]
    ok = subprocess.run([*seva, "build", str(path), "output.name=cli_set", "backend.max_new_tokens=4", "--no-progress"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "pairs kept in" in ok.stdout and os.path.isfile(tmp_path / "data" / "cli_set.jsonl")
    bad = subprocess.run([*seva, "build", str(path), "augment.stepp=3"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown key 'stepp' in augment") and "Traceback" not in bad.stderr


def test_prefetch_stops_and_closes_the_source_when_the_consumer_leaves():
    """The prefetch thread used to block forever on ``put`` once the consumer was gone, and the
    source iterator (an open file) was never closed."""
    import threading

    from seva_plugin.pipeline.build import prefetch

    closed = threading.Event()

    def source():
        try:
            yield from range(1000)
        finally:
            closed.set()

    it = prefetch(source(), depth=1)
    assert next(it) == 0
    it.close()  # the consumer leaves early (an error, Ctrl-C)
    assert closed.wait(5)
    assert not any(t.name == "seva-prefetch" and t.is_alive() for t in threading.enumerate())


def test_a_strategy_needs_nothing_but_the_contract(build_config, tiny_clip, monkeypatch):
    """CSR used to check four backend methods and call a fifth; now any backend serving
    ``generate`` runs both strategies. A scripted backend (no model at all) proves it."""
    from seva_plugin.interfaces import Backend, Completion

    sentences = [["The square is red.", "A blue circle."], [" It is small.", " Big."]]  # proposal k takes option k % 2

    class Scripted(Backend):
        name = "scripted"
        requests: list = []

        def __init__(self, model, template):
            pass

        def generate(self, requests):
            Scripted.requests += requests
            out = []
            for r in requests:
                step = r.prefix.count(".")
                texts = [sentences[step][(k + (not r.view.clean)) % 2] if step < 2 else "" for k in range(r.n)]
                logprobs = [[-0.5 - k * 0.1] * 3 if r.logprobs else None for k in range(r.n)]
                out.append([Completion(t, "stop" if t else "eos", [1, 2, 3], lp) for t, lp in zip(texts, logprobs, strict=True)])
            return out

    use_backends(monkeypatch, Scripted)
    config = {**build_config, "backend": {"name": "scripted"}, "limit": 2}
    seva = Build({**config, "output": {**config["output"], "name": "scripted_seva"}}).run(progress=False)
    rows = read_jsonl(seva.data_file)
    assert [(r["chosen"]["value"], r["rejected"]["value"]) for r in rows] == [("The square is red.", "A blue circle.")] * 2

    Scripted.requests = []
    csr = {"name": "csr", "clip_model": tiny_clip, "num_proposals": 2, "max_sentence_tokens": 5, "max_response_chars": 60}
    built = Build({**config, "strategy": csr, "output": {**config["output"], "name": "scripted_csr"}}).run(progress=False)
    finished = {a + b for a in sentences[0] for b in sentences[1]}
    rows = read_jsonl(built.data_file)
    assert rows and all({r["chosen"]["value"], r["rejected"]["value"]} <= finished for r in rows)
    assert all(r["chosen"]["value"] != r["rejected"]["value"] for r in rows)
    # the search went sentence by sentence through the contract: continuations of prefixes, n proposals, stop strings, log-probs
    assert {r.prefix for r in Scripted.requests} >= {"", *sentences[0]} and all(r.n == 2 and r.stop and r.logprobs for r in Scripted.requests)

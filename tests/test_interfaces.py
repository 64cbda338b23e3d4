"""The component bases (``seva_plugin/interfaces.py``) as the build uses them: a writer's typed
``WriteResult``, pairs only for the records a strategy was given."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pytest

from helpers import answer, read_jsonl
from seva_plugin import Backend, ConfigError, Pair, PromptRecord, Strategy, Writer, WriteResult, hookimpl
from seva_plugin.errors import SevaError
from seva_plugin.pipeline.build import Build
from seva_plugin.registry import Registry, make_plugin_manager


class Scripted(Backend):
    """Answers "red" on the clean view and "blue" on any other; counts its calls."""

    name = "scripted"
    calls = 0

    def __init__(self, model, template, batch_size: int = 4):
        self.batch_size = batch_size

    def generate(self, requests):
        Scripted.calls += 1
        return [answer(["red" if r.view.clean else "blue"] * r.n) for r in requests]


@dataclass
class LinesWriter(Writer):
    """A third-party writer: one line per pair, no registry; ``shape`` picks what write() returns."""

    name = "test_lines"
    dataset_dir: str
    dataset_name: str
    shape: str = "typed"

    def write(self, pairs, overwrite):
        path = os.path.join(self.dataset_dir, f"{self.dataset_name}.lines")
        with open(path, "w") as fh:
            count = sum(1 for p in pairs if fh.write(f"{p['id']}\t{p['chosen']}\t{p['rejected']}\n"))
        if self.shape == "dict":
            return {"written": count}
        if self.shape == "empty":
            return {}
        return WriteResult(path, count, "lines", details={"columns": 3})


@dataclass
class Impostor(Strategy):
    """Builds a record of its own with another prompt (what a strategy may not do)."""

    name = "test_impostor"

    def make_pairs(self, records, backend, augmenter):
        return [Pair(PromptRecord(r.id, "<image>Another question?", r.record.images), "a", "b") for r in records]


@pytest.fixture
def registry(monkeypatch):
    class Plugin:
        @hookimpl
        def register_backends(self, register):
            register(Scripted)

        @hookimpl
        def register_writers(self, register):
            register(LinesWriter)

        @hookimpl
        def register_strategies(self, register):
            register(Impostor)

    pm = make_plugin_manager(third_party=False)
    pm.register(Plugin(), name="test-interfaces")
    monkeypatch.setattr("seva_plugin.pipeline.build.get_registry", lambda: Registry(pm))
    Scripted.calls = 0


@pytest.fixture
def config(build_config, registry):
    return {**build_config, "backend": {"name": "scripted"}, "output": {**build_config["output"], "writer": "test_lines"}}


def test_a_third_party_writers_result_is_what_the_manifest_records(config):
    result = Build(config).run(progress=False)
    assert result.kept == 10 and result.data_file.endswith(".lines") and result.registry is None
    files = json.load(open(result.manifest_file))["files"]
    assert files.pop("data") == {"path": result.data_file, "format": "lines", "records": 10, "columns": 3, "skipped": []}
    assert files == {"rejects": {"path": result.rejects_file, "sha256": files["rejects"]["sha256"]}}  # the build's own file beside it


@pytest.mark.parametrize("shape", ["dict", "empty"])
def test_a_writer_returning_something_else_is_named_and_its_pairs_kept(config, shape):
    """No KeyError after all generation, no NothingKept for written pairs: the writer is named, and
    a rerun with a fixed writer writes from the journal without generating again."""
    broken = {**config, "output": {**config["output"], "shape": shape}}
    with pytest.raises(SevaError, match=r"writer 'test_lines' returned .* from write\(\), not a seva_plugin.WriteResult; its pairs are kept") as error:
        Build(broken).run(progress=False)
    assert type(error.value) is SevaError  # not NothingKept
    calls = Scripted.calls
    result = Build(config).run(progress=False)
    assert result.kept == 10 and Scripted.calls == calls  # nothing generated again


def test_a_pair_for_a_record_the_strategy_built_is_refused(config):
    with pytest.raises(ConfigError, match="strategy 'test_impostor' returned a pair for record 'p0' with another record .* never builds records"):
        Build({**config, "strategy": "test_impostor"}).run(progress=False)


def test_the_build_writes_pair_prompts_through_the_builtin_writers(build_config, monkeypatch, tmp_path):
    """Pair.prompt is what the llamafactory and trl writers write as the training prompt."""

    @dataclass
    class Rephrased(Strategy):
        name = "test_rephrased"

        def make_pairs(self, records, backend, augmenter):
            return [Pair(r.record, "red", "blue", prompt=r.record.prompt + " Answer briefly.") for r in records]

    pm = make_plugin_manager(third_party=False)

    class Plugin:
        @hookimpl
        def register_strategies(self, register):
            register(Rephrased)

        @hookimpl
        def register_backends(self, register):
            register(Scripted)

    pm.register(Plugin(), name="test-rephrased")
    monkeypatch.setattr("seva_plugin.pipeline.build.get_registry", lambda: Registry(pm))
    base = {**build_config, "strategy": "test_rephrased", "backend": {"name": "scripted"}, "limit": 3}
    jsonl = Build(base).run(progress=False)
    assert {r["conversations"][0]["value"] for r in read_jsonl(jsonl.data_file)} == {"<image>What colour is the square? Answer briefly."}
    trl = Build({**base, "output": {"dataset_dir": str(tmp_path / "trl"), "name": "trl", "writer": "trl"}}).run(progress=False)
    from datasets import load_dataset

    rows = load_dataset(os.path.dirname(trl.data_file), split="train")
    assert rows[0]["prompt"][0]["content"][-1]["text"] == "What colour is the square? Answer briefly."


def test_the_build_prepares_what_the_strategy_plans_with_its_prompts(build_config, monkeypatch, asked_elsewhere):
    """The prefetch thread hands the backend the strategy's planned requests (own prompts and systems
    included), and they are exactly what the strategy then asks."""
    from seva_plugin import CLEAN, Scores
    from seva_plugin.registry import get_plugin_manager

    seen: dict[str, list] = {"prepared": [], "asked": []}

    def key(r):
        return (r.record.id, r.view, r.prompt, r.system, r.prefix, r.n)

    class Watching(Scripted):
        name = "watching"

        def prepare(self, requests):
            seen["prepared"].append([key(r) for r in requests])

        def generate(self, requests):
            seen["asked"].append([key(r) for r in requests])
            return [answer([f"{r.record.id} {r.system}"]) for r in requests]

        def score(self, requests):
            return [Scores([1], [-1.0]) for _ in requests]

    class Plugin:
        @hookimpl
        def register_backends(self, register):
            register(Watching)

    pm = get_plugin_manager()
    pm.register(Plugin(), name="test-watching")
    try:
        monkeypatch.setattr("seva_plugin.pipeline.build.get_registry", lambda: Registry(pm))
        result = Build({**build_config, "strategy": asked_elsewhere, "backend": {"name": "watching"}}).run(progress=False)
    finally:
        pm.unregister(name="test-watching")
    assert result.kept == 10 and len(seen["asked"]) == 3  # batches of 4, 4, 2
    assert seen["prepared"] == seen["asked"]
    assert {k[2] for batch in seen["asked"] for k in batch} == {"<image>Describe the colours you see."} and CLEAN in {k[1] for k in seen["asked"][0]}

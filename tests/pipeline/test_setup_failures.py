"""An error that is not a record's fault stops the build, and is never journaled as a reject (issue 26,
item 8): a model that does not load, running out of memory, an engine that died. Once fixed, the
rerun answers those records. Scripted backends stand in for the model (labelled below)."""

from __future__ import annotations

import os

import pytest

from helpers import answer, read_jsonl, scripted_config, use_backends
from seva_plugin.errors import SevaError
from seva_plugin.interfaces import Backend
from seva_plugin.pipeline.build import build
from seva_plugin.pipeline.dataset_files import DatasetFiles


class Broken(Backend):
    """Stands in for a half-copied model, an exhausted GPU or a dead vLLM engine: ``Broken.failure(record
    ids, call number)`` gives the exception a call raises, or None to answer."""

    name = "broken"
    failure = staticmethod(lambda ids, call: None)
    calls = 0

    def __init__(self, model, template, batch_size: int = 2):
        self.batch_size = batch_size

    def generate(self, requests):
        Broken.calls += 1
        error = Broken.failure({r.record.id for r in requests}, Broken.calls)
        if error is not None:
            raise error
        return [answer(["red" if r.view.clean else "blue"] * r.n) for r in requests]


class OutOfMemoryError(RuntimeError):
    """torch.OutOfMemoryError's name (torch.cuda.OutOfMemoryError), without a GPU."""


class EngineDeadError(Exception):
    """vLLM's (vllm.v1.engine.exceptions.EngineDeadError), without vLLM."""


@pytest.fixture
def config(tmp_path, monkeypatch) -> dict:
    use_backends(monkeypatch, Broken)
    monkeypatch.setattr(Broken, "calls", 0)
    cfg = scripted_config(tmp_path, n=6)
    cfg["backend"] = {"name": "broken"}
    return cfg


def journaled(config) -> list[dict]:
    return list(DatasetFiles(config["output"]["dataset_dir"], config["output"]["name"]).journal_entries())


def fixed(config, monkeypatch):
    monkeypatch.setattr(Broken, "failure", staticmethod(lambda ids, call: None))
    result = build(config, progress=False)
    assert result.kept == 6 and result.rejected == {}
    return result


def test_a_model_that_does_not_load_stops_the_build_and_rejects_nothing(config, monkeypatch):
    """Each try names another engine process, so the messages differ: every record became generation_error, for good."""

    def failure(ids, call):
        return RuntimeError(f"Engine core initialization failed: {{'EngineCore_DP0': {4000 + call}}}")

    monkeypatch.setattr(Broken, "failure", staticmethod(failure))
    with pytest.raises(SevaError, match="no record has been answered yet.*Engine core initialization failed"):
        build(config, progress=False)
    assert journaled(config) == []
    fixed(config, monkeypatch)


def test_one_record_a_batch_is_no_different(config, monkeypatch):
    monkeypatch.setattr(Broken, "failure", staticmethod(lambda ids, call: OSError("Error while deserializing header: incomplete metadata")))
    with pytest.raises(SevaError, match="no record has been answered yet"):
        build({**config, "backend": {"name": "broken", "batch_size": 1}}, progress=False)
    assert journaled(config) == []


def test_out_of_memory_on_one_record_stops_the_build_and_the_rerun_answers_it(config, monkeypatch):
    def failure(ids, call):
        return OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB") if "p3" in ids else None

    monkeypatch.setattr(Broken, "failure", staticmethod(failure))
    with pytest.raises(SevaError, match=r"out of memory.*'p3'.*rerun") as err:
        build(config, progress=False)
    assert "OutOfMemoryError" in str(err.value)
    assert [e["id"] for e in journaled(config)] == ["p0", "p1"]  # the batches before it are kept; no reject
    result = fixed(config, monkeypatch)
    assert [r["id"] for r in read_jsonl(result.data_file)] == [f"p{i}" for i in range(6)]


def test_a_batch_too_large_for_memory_is_split_and_answered(config, monkeypatch):
    monkeypatch.setattr(Broken, "failure", staticmethod(lambda ids, call: MemoryError() if len(ids) > 1 else None))
    result = build(config, progress=False)
    assert result.kept == 6 and result.rejected == {}


def test_an_engine_that_died_stops_the_build(config, monkeypatch):
    monkeypatch.setattr(Broken, "failure", staticmethod(lambda ids, call: EngineDeadError("EngineCore encountered an issue") if call >= 2 else None))
    with pytest.raises(SevaError, match="EngineDeadError"):
        build(config, progress=False)
    assert [e["kind"] for e in journaled(config)] == ["pair", "pair"]
    assert not os.path.exists(DatasetFiles(config["output"]["dataset_dir"], "ds").rejects)
    fixed(config, monkeypatch)


def test_records_at_fault_are_still_rejected_before_any_answer(config, monkeypatch):
    """A RecordError names its record's own fault (a prompt too long): rejected even in the first batch."""
    from seva_plugin.errors import RecordError

    too_long = RecordError("prompt too long: 900 tokens", "too_long")
    monkeypatch.setattr(Broken, "failure", staticmethod(lambda ids, call: too_long if ids & {"p0", "p1"} else None))
    result = build(config, progress=False)
    assert result.rejected == {"too_long": 2} and result.kept == 4

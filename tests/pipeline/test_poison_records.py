"""Poison records: no single input stops a build, resumes included (issue 15, items 8-10).

The README promises that a build never stops on bad input. A lone surrogate used to crash the
tokenizer in every run, a reject whose id held one crashed the journal writer, a 100,000-character
prompt took over 10 GB, and any exception on one record stopped everything.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from helpers import answer, read_jsonl, use_backends
from seva_plugin.interfaces import Backend
from seva_plugin.pipeline.build import Build, build
from seva_plugin.pipeline.journal import read_entries


def append_rows(path: str, rows: list[dict]) -> None:
    with open(path, "a") as fh:  # json.dumps writes a lone surrogate as the escape "\ud800", as real files do
        for row in rows:
            fh.write(json.dumps(row) + "\n")


def rejects_by_id(result) -> dict[str, dict]:
    return {r["id"]: r for r in read_jsonl(result.rejects_file)}


def test_lone_surrogates_and_nul_are_rejected_and_the_journal_round_trips(build_config, prompts):
    append_rows(
        prompts,
        [
            {"id": "surrogate", "image": "images/img000.png", "question": "What \ud800 colour is the square?"},
            {"id": "nul", "image": "images/img001.png", "question": "What colour\u0000 is the square?"},
            {"id": "bad\udc80id", "image": "images/nope.png", "question": "Q?"},  # a reject whose id has one
        ],
    )
    result = build(build_config, progress=False)
    rejects = rejects_by_id(result)
    assert rejects["surrogate"]["reason"].startswith("the record's prompt is not valid Unicode text")
    assert "NUL" in rejects["nul"]["reason"]
    assert "bad\udc80id" in rejects  # the rejects file reads back the same id
    assert result.rejected == {"bad_text": 3}
    assert result.kept + sum(result.dropped.values()) == 10
    journal = [e for e in read_entries(os.path.join(result.dataset_dir, ".seva", "seva_test.journal.jsonl")) if e["kind"] == "reject"]
    assert {e["id"] for e in journal} == {"surrogate", "nul", "bad\udc80id"}  # journal lines round-trip
    data = open(result.data_file, "rb").read()
    again = build(build_config, progress=False)  # the rerun resumes past them, nothing twice
    assert again.resumed and again.rejected == {"bad_text": 3} and open(again.data_file, "rb").read() == data


def test_a_huge_prompt_is_rejected_as_too_long_before_generation(build_config, prompts):
    """The model's context (2048 for the tiny LLaVA) less max_new_tokens bounds the prompt."""
    append_rows(prompts, [{"id": "huge", "image": "images/img000.png", "question": "word " * 20_000}])
    started = time.time()
    result = build({**build_config, "limit": 11}, progress=False)
    assert result.rejected == {"too_long": 1}
    assert "too long" in rejects_by_id(result)["huge"]["reason"] and len(rejects_by_id(result)["huge"]["reason"]) < 300
    assert result.kept + sum(result.dropped.values()) == 10
    assert time.time() - started < 300


def test_max_prompt_tokens_rejects_what_does_not_fit(build_config, prompts):
    append_rows(prompts, [{"id": "wordy", "image": "images/img000.png", "question": "Describe " * 60 + "the square."}])
    config = {**build_config, "backend": {**build_config["backend"], "max_prompt_tokens": 80}}
    result = build(config, progress=False)
    assert set(rejects_by_id(result)) == {"wordy"}
    assert rejects_by_id(result)["wordy"]["reason"].startswith("prompt too long:") and "80" in rejects_by_id(result)["wordy"]["reason"]
    with pytest.raises(Exception, match="max_prompt_tokens"):
        Build({**build_config, "backend": {**build_config["backend"], "max_prompt_tokens": 0}})


# -- an exception on one record (scripted backends: no model) -------------------------------------
class Flaky(Backend):
    """Answers like a model, but raises for record ``p2``, while preparing (``prepare_fails``) or
    while generating: a bug or a resource limit that only that input hits."""

    name = "flaky"

    def __init__(self, model, template, batch_size: int = 4, prepare_fails: bool = False):
        self.batch_size = batch_size
        self.prepare_fails = prepare_fails

    def prepare(self, requests):
        if self.prepare_fails and any(r.record.id == "p1" for r in requests):
            raise RuntimeError("preparing p1 failed")

    def generate(self, requests):
        if any(r.record.id == "p2" for r in requests):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return [answer(["red" if r.view.clean else "blue"] * r.n) for r in requests]


@pytest.fixture
def flaky(monkeypatch):
    use_backends(monkeypatch, Flaky)


@pytest.fixture
def no_model_config(build_config, tmp_path):
    model = tmp_path / "fake_model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llava"}')
    return {**build_config, "model": str(model), "backend": {"name": "flaky"}}


def test_an_exception_while_generating_one_record_rejects_it_and_the_build_goes_on(no_model_config, flaky):
    result = build(no_model_config, progress=False)
    assert result.kept == 9
    reject = rejects_by_id(result)["p2"]
    assert "RuntimeError" in reject["reason"] and "illegal memory access" in reject["reason"]
    assert [r["id"] for r in read_jsonl(result.data_file)] == [f"p{i}" for i in range(10) if i != 2]


def test_an_exception_while_preparing_does_not_stop_the_build(no_model_config, flaky, monkeypatch):
    """Preparing ahead (the prefetch thread) is optional: its failure used to end the build."""
    config = {**no_model_config, "backend": {"name": "flaky", "prepare_fails": True}}
    result = build(config, progress=False)
    assert result.kept == 9 and set(rejects_by_id(result)) == {"p2"}


def test_an_exception_while_loading_one_records_images_rejects_it(no_model_config, flaky, monkeypatch):
    from seva_plugin.pipeline import intake

    real = intake.load_rgb

    def load(path):
        if path.endswith("img005.png"):
            raise KeyError("a decoder bug")
        return real(path)

    monkeypatch.setattr(intake, "load_rgb", load)
    result = build(no_model_config, progress=False)
    assert rejects_by_id(result)["p5"]["reason"].startswith("could not be prepared: KeyError")
    assert result.kept == 8 and result.rejected == {"prepare_error": 1, "generation_error": 1}

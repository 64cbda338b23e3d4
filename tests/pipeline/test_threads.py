"""Torch's threads during a CPU build are chosen (issue 24, point 8): one by default, SEVA_TORCH_THREADS
to change it, OMP_NUM_THREADS respected, the caller's setting restored; the data does not depend on it."""

from __future__ import annotations

import json

import pytest

from helpers import make_images, use_backends
from seva_plugin.errors import ConfigError
from seva_plugin.interfaces import Backend, Completion


class ThreadCounter(Backend):
    """Answers by view, and records the torch threads it generated with."""

    name = "thread_counter"
    seen: list[int] = []

    def __init__(self, model, template, batch_size: int = 2):
        self.batch_size = batch_size

    def generate(self, requests):
        import torch

        ThreadCounter.seen.append(torch.get_num_threads())
        return [[Completion("red" if r.view.clean else "blue", "eos", [])] * r.n for r in requests]


@pytest.fixture
def config(tmp_path, monkeypatch) -> dict:
    use_backends(monkeypatch, ThreadCounter)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)  # a CPU machine, whatever this one has
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llava"}')
    names = make_images(tmp_path / "images", 3)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "image": f"images/{n}", "question": "Colour?"}) + "\n" for i, n in enumerate(names)))
    ThreadCounter.seen = []
    output = {"dataset_dir": str(tmp_path / "data"), "name": "t"}
    return {"model": str(model), "template": "llava", "source": {"file": str(prompts)}, "backend": {"name": "thread_counter"}, "output": output}


@pytest.mark.parametrize(
    "env, threads",
    [
        ({}, 1),
        ({"SEVA_TORCH_THREADS": "3"}, 3),
        ({"SEVA_TORCH_THREADS": "0"}, 2),
        ({"OMP_NUM_THREADS": "2"}, 2),
        ({"OMP_NUM_THREADS": "2", "SEVA_TORCH_THREADS": "1"}, 1),
    ],
)
def test_a_cpu_build_runs_with_the_threads_the_rule_gives(config, monkeypatch, env, threads):
    """A fresh process starts with torch's one thread per core (2 here): the build used to keep it."""
    import torch

    from seva_plugin.pipeline.build import build

    for name in ("SEVA_TORCH_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # torch's default on a 2-core machine; SEVA_TORCH_THREADS=0 and OMP_NUM_THREADS keep it
    try:
        build(config, progress=False)
        assert set(ThreadCounter.seen) == {threads}
        assert torch.get_num_threads() == 2  # the caller's setting is back
    finally:
        torch.set_num_threads(before)


def test_a_bad_thread_count_is_refused_before_anything_runs(config, monkeypatch):
    from seva_plugin.pipeline.build import Build

    monkeypatch.setenv("SEVA_TORCH_THREADS", "many")
    with pytest.raises(ConfigError, match=r"SEVA_TORCH_THREADS must be a whole number of threads.*'many'"):
        Build(config)
    assert ThreadCounter.seen == []

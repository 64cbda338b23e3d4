"""Strategy ``stic`` with the tiny offline LLaVA: the official prompts and draws, each answer rebuilt on
its own from its request, the corrupted view really used, stage 2's description-infused SFT set."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from helpers import make_images, read_jsonl
from seva_plugin.errors import ConfigError
from seva_plugin.interfaces import CLEAN, GenerationRequest
from seva_plugin.pipeline.records import LoadedRecord, PromptRecord
from seva_plugin.pipeline.views import record_seed, view_generator
from seva_plugin.plugins.strategies.stic import prompts as P
from seva_plugin.plugins.strategies.stic.strategy import CORRUPTION, HALLUCINATION, infused
from seva_plugin.registry import get_registry

pytest.importorskip("torch")


def stic(**params):
    return get_registry().get("strategy", "stic").build(params, "strategy")


def fake_record(i: int, images: int = 1, meta: dict | None = None) -> LoadedRecord:
    record = PromptRecord(f"r{i}", "<image>" * images, [f"/x/{i}-{k}.png" for k in range(images)], meta or {})
    return LoadedRecord(record, [None] * images, record_seed(0, record.id))


@pytest.fixture(scope="module")
def backend(tiny_llava):
    from seva_plugin.plugins.backends.hf import HfBackend

    b = HfBackend(model=tiny_llava, template="llava", batch_size=4)
    b.hf_model  # noqa: B018 - load once for the module
    return b


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("stic_images")
    out = []
    for name in make_images(folder, 8):
        path = str(folder / name)
        out.append(LoadedRecord(PromptRecord(name, "<image>", [path]), [Image.open(path).convert("RGB")], record_seed(0, name)))
    return out


# -- config and draws ----------------------------------------------------------------------------
def test_registered_with_the_official_values():
    s = stic()
    assert (s.hallucination_share, s.temperature, s.top_p, s.max_new_tokens) == (0.5, 0.2, 1.0, 1024)
    assert s.descriptions == P.DESCRIPTION_PROMPTS and len(s.descriptions) == 8
    assert s.hallucinations == P.HALLUCINATION_PROMPTS and len(s.hallucinations) == 8
    assert s.detailed == P.DETAILED_PROMPT and s.detailed.startswith("Please provide a detailed description of the image")
    assert [(v.id, v.augmenter.name) for v in s.corruption_views] == [(1, "low_resolution"), (2, "color_jitter")]
    assert (s.corruption_views[0].augmenter.size, s.corruption_views[1].augmenter.brightness, s.corruption_views[1].augmenter.hue) == (20, 0.5, 0.3)
    assert not s.uses_augmenter and not s.needs_question and not s.needs_score


def test_bad_config_is_refused_before_any_model_loads():
    with pytest.raises(ConfigError, match=r"hallucination_share must be in \[0, 1\]"):
        stic(hallucination_share=1.5)
    with pytest.raises(ConfigError, match="description_prompts must be a non-empty list"):
        stic(description_prompts=[])
    with pytest.raises(ConfigError, match="must not hold <image> markers"):
        stic(hallucination_prompts=["<image>Imagine more."])
    with pytest.raises(ConfigError, match="unknown augmenter 'blur'"):
        stic(corruptions=["blur"])
    with pytest.raises(ConfigError, match=r"unknown key 'radius' in strategy.corruptions\[0\]"):
        stic(corruptions=[{"name": "low_resolution", "radius": 3}])
    with pytest.raises(ConfigError, match="strategy.temperature must be 0"):
        stic(temperature=-1.0)
    assert stic(hallucination_share=1.0, corruptions=[]).corruption_views == []  # no corrupted negatives: none needed


def test_draws_follow_the_records_seed_and_the_official_ratios():
    s = stic()
    plans = [s.plan(fake_record(i)) for i in range(2000)]
    assert [s.plan(fake_record(i)) for i in range(20)] == plans[:20]  # a function of the record alone
    kinds = Counter(p.negative for p in plans)
    assert 0.45 < kinds[HALLUCINATION] / 2000 < 0.55  # official: random() > 0.5
    views = Counter(p.view.augmenter.name for p in plans if p.negative == CORRUPTION)
    assert set(views) == {"low_resolution", "color_jitter"} and 0.4 < views["low_resolution"] / kinds[CORRUPTION] < 0.6
    assert set(p.pair_prompt for p in plans) == set(P.DESCRIPTION_PROMPTS)
    assert set(p.rejected_prompt for p in plans if p.negative == HALLUCINATION) == set(P.HALLUCINATION_PROMPTS)
    for p in plans:
        if p.negative == HALLUCINATION:
            assert p.view is CLEAN and p.rejected_prompt in P.HALLUCINATION_PROMPTS
        else:  # the corrupted image is described with the pair's own prompt
            assert p.rejected_prompt == p.pair_prompt and p.view in s.corruption_views
    only = stic(hallucination_share=0.0, corruptions=["color_jitter"])
    assert {only.plan(fake_record(i)).view.augmenter.name for i in range(50)} == {"color_jitter"}


def test_planned_requests_ask_the_official_prompts():
    s = stic()
    records = [fake_record(0), fake_record(1, images=2)]
    requests = s.planned_requests(records)
    chosen, rejected = requests[:2], requests[2:]
    for r, c, j in zip(records, chosen, rejected, strict=True):
        plan = s.plan(r)
        marks = "<image>\n" * len(r.images)
        assert c.prompt == marks + P.DETAILED_PROMPT and c.view is CLEAN
        assert j.prompt == marks + plan.rejected_prompt and j.view is plan.view
        assert c.sampling == j.sampling and (c.sampling.temperature, c.sampling.top_p) == (0.2, 1.0)
        assert c.max_new_tokens == j.max_new_tokens == 1024 and c.n == j.n == 1
        assert c.seed != j.seed and c.seed == s.planned_requests(records)[records.index(r)].seed


# -- with the tiny model ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def pairs(backend, records):
    s = stic(max_new_tokens=10)
    return s, s.make_pairs(records, backend)


def test_each_answer_is_its_requests_answer_asked_alone(pairs, backend, records):
    """Chosen and rejected come from the record's own requests (the corrupted view included), whatever
    the batch: each request asked alone gives the same text."""
    s, made = pairs
    assert [p.record for p in made] == [r.record for r in records]
    planned = s.planned_requests(records)
    for i, (r, pair) in enumerate(zip(records, made, strict=True)):
        ((chosen,),) = backend.generate([planned[i]])
        ((rejected,),) = backend.generate([planned[len(records) + i]])
        assert (pair.chosen, pair.rejected) == (chosen.text, rejected.text)
        plan = s.plan(r)
        assert pair.prompt == "<image>\n" + plan.pair_prompt
        assert pair.scores == {
            "method": "stic",
            "chosen": {"prompt": P.DETAILED_PROMPT, "view_id": 0, "view": "clean"},
            "rejected": {
                "kind": plan.negative,
                "prompt": plan.rejected_prompt,
                "view_id": plan.view.id,
                "view": "clean" if plan.view is CLEAN else plan.view.augmenter.name,
            },
        }
    assert {p.scores["rejected"]["kind"] for p in made} == {HALLUCINATION, CORRUPTION}


def test_the_corrupted_view_is_what_the_model_sees(pairs, backend, records):
    import numpy as np

    s, made = pairs
    i = next(k for k, p in enumerate(made) if p.scores["rejected"]["kind"] == CORRUPTION)
    record, view = records[i], s.plan(records[i]).view
    seen = backend.renderer.view_images(record, view)
    expected = view.augmenter(record.images[0], view_generator(record.seed, view.id, 0))
    assert np.array_equal(np.asarray(seen[0]), np.asarray(expected))
    assert not np.array_equal(np.asarray(seen[0].resize(record.images[0].size)), np.asarray(record.images[0]))
    # and the pixels the model gets for the rejected request are the corrupted image's, not the clean one's
    clean = GenerationRequest(record, CLEAN, prompt="<image>\n" + s.plan(record).pair_prompt)
    corrupted = GenerationRequest(record, view, prompt=clean.prompt)
    assert backend.model_inputs([clean])[2]["pixel_values"].tolist() != backend.model_inputs([corrupted])[2]["pixel_values"].tolist()


# -- stage 2: the description infused into an instruction ------------------------------------------
@pytest.mark.parametrize(
    "first, expected",
    [
        ("<image>\nWhat is it?", "<image>\nImage description:\nA red square.\n\nWhat is it?"),
        ("What is it?\n<image>", "Image description:\nA red square.\n\nWhat is it?\n<image>"),
        ("What is it?", "<image>\nImage description:\nA red square.\n\nWhat is it?"),
    ],
)
def test_infused_follows_add_des_to_data(first, expected):
    turns = [{"from": "human", "value": first}, {"from": "gpt", "value": "A square."}, {"from": "human", "value": "Colour?"}, {"from": "gpt", "value": "Red."}]
    out = infused(fake_record(0, meta={"conversations": turns}), "A red square.")
    assert out == [{"from": "human", "value": expected}, *turns[1:]]
    assert turns[0]["value"] == first  # the record's own instruction is left as it was


def test_infused_needs_an_instruction_whose_markers_fit():
    assert infused(fake_record(0), "A red square.") is None
    two_markers = [{"from": "human", "value": "<image>\n<image>\nCompare."}, {"from": "gpt", "value": "Same."}]
    assert infused(fake_record(0, meta={"conversations": two_markers}), "A red square.") is None
    assert infused(fake_record(0, images=2, meta={"conversations": two_markers}), "x")[0]["value"].count("Image description:") == 2


def test_build_writes_pairs_and_the_description_infused_sft_set(tiny_llava, tmp_path):
    import datasets

    from seva_plugin.pipeline.build import build

    names = make_images(tmp_path / "imgs", 4)
    rows = [{"id": f"i{k}", "image": f"imgs/{n}"} for k, n in enumerate(names)]
    rows[1]["conversations"] = [{"from": "human", "value": "<image>\nWhat colour is the square?"}, {"from": "gpt", "value": "Red."}]
    rows[3]["conversations"] = [{"from": "human", "value": "Where is the square?"}, {"from": "gpt", "value": "Left."}]
    (tmp_path / "images.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {
        "model": tiny_llava,
        "template": "llava",
        "source": {"name": "images", "file": str(tmp_path / "images.jsonl")},
        "strategy": {"name": "stic", "max_new_tokens": 8, "temperature": 0},
        "backend": {"name": "hf", "batch_size": 3},
        "filters": ["empty"],
        "output": {"dataset_dir": str(tmp_path / "data"), "name": "stic_test", "sft": True},
    }
    result = build(config, progress=False)
    pairs = read_jsonl(result.data_file)
    assert result.kept == len(pairs) == 4
    assert all(p["conversations"][0]["value"].removeprefix("<image>\n") in P.DESCRIPTION_PROMPTS for p in pairs)
    assert all(p["provenance"] == {"strategy": "stic", "augment": None, "seed": p["provenance"]["seed"]} for p in pairs)
    sft = read_jsonl(tmp_path / "data" / "stic_test_sft.jsonl")
    by_id = {p["id"]: p for p in pairs}
    assert [r["id"] for r in sft] == ["i1", "i3"]
    for r in sft:
        description = by_id[r["id"]]["chosen"]["value"]
        assert r["images"] == by_id[r["id"]]["images"]
        assert r["conversations"][0]["value"].startswith("<image>\nImage description:\n" + description + "\n\n")
        assert r["conversations"][1]["from"] == "gpt"
    info = json.load(open(tmp_path / "data" / "dataset_info.json"))
    assert info["stic_test_sft"] == {"file_name": "stic_test_sft.jsonl", "formatting": "sharegpt", "columns": {"messages": "conversations", "images": "images"}}
    assert info["stic_test"]["ranking"] is True
    manifest = json.load(open(result.manifest_file))
    assert manifest["files"]["data"]["sft"]["records"] == 2
    # both files load the way LLaMA-Factory loads them (one schema for every row)
    assert datasets.load_dataset("json", data_files=result.data_file, split="train").num_rows == 4
    assert datasets.load_dataset("json", data_files=str(tmp_path / "data" / "stic_test_sft.jsonl"), split="train").num_rows == 2

"""Source ``images``: unlabeled images with no question (a folder, or a list of paths with optional
instructions), accepted for strategies that ask their own prompts and refused, before any model
loads, for strategies that answer the record's question."""

from __future__ import annotations

import json
import os

import pytest

from helpers import make_images
from seva_plugin.errors import ConfigError
from seva_plugin.pipeline.records import PromptRecord, Reject
from seva_plugin.registry import get_registry


def source(**params):
    return get_registry().get("source", "images").build(params, "source")


def test_a_folder_gives_every_image_in_sorted_order_with_no_question(tmp_path):
    make_images(tmp_path / "pics" / "b", 2)
    make_images(tmp_path / "pics" / "a", 1)
    (tmp_path / "pics" / "notes.txt").write_text("not an image")
    (tmp_path / "pics" / ".hidden.png").write_bytes(b"")
    make_images(tmp_path / "pics" / ".cache", 1)
    out = list(source(dir=str(tmp_path / "pics")).iter_records())
    assert [r.id for r in out] == [os.path.join("a", "img000.png"), os.path.join("b", "img000.png"), os.path.join("b", "img001.png")]
    assert all(isinstance(r, PromptRecord) and r.prompt == "<image>" and r.question == "" and r.meta == {} for r in out)
    assert out[0].images == [str(tmp_path / "pics" / "a" / "img000.png")]


def test_a_list_of_paths_keeps_instructions_and_rejects_bad_rows(tmp_path):
    make_images(tmp_path / "imgs", 2)
    conversation = [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A square."}]
    rows = [
        {"id": "a", "image": "imgs/img000.png"},
        {"images": ["imgs/img000.png", "imgs/img001.png"]},
        {"id": "c", "image": "imgs/img001.png", "conversations": conversation},
        {"id": "d"},
        {"id": "e", "image": "imgs/img001.png", "conversations": [{"from": "gpt", "value": "?"}]},
    ]
    (tmp_path / "list.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n[1, 2]\n")
    a, b, c, d, e, f = source(file=str(tmp_path / "list.jsonl")).iter_records()
    assert a.prompt == "<image>" and a.images == [str(tmp_path / "imgs" / "img000.png")]
    assert b.id == "row-2" and b.prompt == "<image><image>" and len(b.images) == 2
    assert c.meta == {"conversations": conversation} and c.prompt == "<image>"
    assert isinstance(d, Reject) and d.code == "no_image"
    assert isinstance(e, Reject) and e.code == "bad_conversations"
    assert isinstance(f, Reject) and f.code == "bad_json"


def test_exactly_one_of_dir_and_file(tmp_path):
    with pytest.raises(ConfigError, match="exactly one of 'dir'"):
        source()
    with pytest.raises(ConfigError, match="exactly one of 'dir'"):
        source(dir=str(tmp_path), file=str(tmp_path / "x.jsonl"))
    with pytest.raises(ConfigError, match="is not a folder"):
        source(dir=str(tmp_path / "missing"))


@pytest.mark.parametrize("strategy", ["seva", "rlaifv"])
def test_a_strategy_that_answers_the_records_question_is_refused_before_loading(strategy, tiny_llava, tmp_path, monkeypatch):
    from seva_plugin.pipeline.build import Build

    make_images(tmp_path / "pics", 2)
    monkeypatch.setattr("llamafactory.model.load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    config = {
        "model": tiny_llava,
        "template": "llava",
        "source": {"name": "images", "dir": str(tmp_path / "pics")},
        "strategy": strategy,
        "output": {"dataset_dir": str(tmp_path / "data"), "name": "refused"},
    }
    with pytest.raises(ConfigError, match=rf"source 'images' yields images with no question, and strategy '{strategy}' answers.*\(stic\)"):
        Build(config)
    config["strategy"] = "stic"
    assert Build(config).strategy.name == "stic"

"""A malformed source row is a reject, never a stop: every source is fed every valid row with each value, at
every level, replaced by values of the wrong types (and each key removed), and must give one record or one
reject with a reason for each row."""

from __future__ import annotations

import copy
import json
import os

import pytest

from helpers import make_images
from seva_plugin.pipeline.records import IMAGE_TOKEN, PromptRecord, Reject
from seva_plugin.registry import get_registry

WRONG = [None, 0, -1, 1.5, True, "", "oops", "<image>", [], {}, ["oops"], [1], [None], [[]], [{}], {"a": 1}, {"from": 1}]


def paths(value, prefix=()):
    """Every place in a JSON value, the value itself first."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from paths(item, (*prefix, i))


def mutations(row):
    """``row`` with each place replaced by each wrong value, and each key or item removed."""
    for path in paths(row):
        for wrong in WRONG:
            if not path:
                yield copy.deepcopy(wrong)
                continue
            out = copy.deepcopy(row)
            *parents, last = path
            target = out
            for step in parents:
                target = target[step]
            target[last] = copy.deepcopy(wrong)
            yield out
        if path:
            out = copy.deepcopy(row)
            *parents, last = path
            target = out
            for step in parents:
                target = target[step]
            del target[last]
            yield out


def check(outputs, n_rows: int):
    assert len(outputs) == n_rows  # one record or one reject a row: nothing lost, nothing raised
    for out in outputs:
        if isinstance(out, Reject):
            assert isinstance(out.id, str) and out.id and isinstance(out.reason, str) and out.reason and out.code
            json.dumps({"id": out.id, "reason": out.reason})  # the rejects file can hold it
        else:
            assert isinstance(out, PromptRecord)
            assert isinstance(out.id, str) and isinstance(out.prompt, str) and all(isinstance(p, str) for p in out.images)
            assert out.prompt.count(IMAGE_TOKEN) == len(out.images) > 0


def source(name, **params):
    return get_registry().get("source", name).build(params)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_jsonl_source_rejects_every_malformed_row(tmp_path):
    make_images(tmp_path, 2)
    valid = {"id": "a", "images": ["img000.png", "img001.png"], "question": "<image><image>Same colour?"}
    rows = [valid, *mutations(valid), {"id": "b", "image": "img000.png", "question": "What?"}]
    outputs = list(source("jsonl", file=write_jsonl(tmp_path / "p.jsonl", rows)).iter_records())
    check(outputs, len(rows))
    assert isinstance(outputs[0], PromptRecord) and isinstance(outputs[-1], PromptRecord)
    assert {o.code for o in outputs if isinstance(o, Reject)} >= {"malformed", "bad_json", "no_image", "empty_question"}
    (bad_id,) = [o for o in outputs[1:-1] if isinstance(o, Reject) and "id must be" in o.reason and "1.5" in o.reason]
    assert bad_id.id.startswith("line-")  # an unusable id: the reject is named by its line


def llava_row(rid, image):
    return {
        "id": rid,
        "image": image,
        "conversations": [{"from": "human", "value": "<image>\nWhat is the title?"}, {"from": "gpt", "value": "A book."}],
    }


def test_llava_source_rejects_every_malformed_row(tmp_path):
    make_images(tmp_path, 1)
    valid = llava_row("r0", "img000.png")
    rows = [valid, *mutations(valid)]
    (tmp_path / "llava.json").write_text(json.dumps(rows))
    outputs = list(source("llava", file=str(tmp_path / "llava.json")).iter_records())
    check(outputs, len(rows))
    assert isinstance(outputs[0], PromptRecord)
    oops = [o for o in outputs if isinstance(o, Reject) and "conversations[0] must be an object" in o.reason and "'oops'" in o.reason]
    assert oops and all(o.id == "r0" and o.code == "malformed" for o in oops)  # the row's own id, its reason


def test_llava_seva_preset_rejects_every_malformed_row(tmp_path):
    valid = [llava_row("o", "ocr_vqa/images/1.jpg"), llava_row("t", "textvqa/train_images/1.jpg")]
    rows = [*valid, *(m for v in valid for m in mutations(v))]
    (tmp_path / "llava.json").write_text(json.dumps(rows))
    outputs = list(source("llava", file=str(tmp_path / "llava.json"), preset="seva", ocr_vqa_images=10**6, textcaps_images=10**6).iter_records())
    assert outputs and all(isinstance(o, (PromptRecord, Reject)) for o in outputs)
    assert any(isinstance(o, Reject) and o.code == "malformed" for o in outputs)
    assert {o.meta["subset"] for o in outputs if isinstance(o, PromptRecord)} == {"ocr_vqa", "textcaps"}


@pytest.mark.parametrize("formatting", ["sharegpt", "alpaca"])
def test_llamafactory_source_rejects_every_malformed_row(formatting, tmp_path):
    make_images(tmp_path, 1)
    if formatting == "sharegpt":
        valid = {"messages": [{"role": "user", "content": "<image>Describe."}, {"role": "assistant", "content": "ok"}], "images": ["img000.png"]}
        entry = {
            "file_name": "d.jsonl",
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
        }
    else:
        valid = {"instruction": "Describe", "input": "briefly", "output": "ok", "images": ["img000.png"]}
        entry = {"file_name": "d.jsonl", "columns": {"prompt": "instruction", "query": "input", "response": "output", "images": "images"}}
    rows = [valid, *mutations(valid)]
    write_jsonl(tmp_path / "d.jsonl", rows)
    (tmp_path / "dataset_info.json").write_text(json.dumps({"d": entry}))
    outputs = list(source("llamafactory", dataset="d", dataset_dir=str(tmp_path)).iter_records())
    check(outputs, len(rows))
    assert isinstance(outputs[0], PromptRecord)
    assert any(isinstance(o, Reject) and o.code == "malformed" for o in outputs)


def test_a_malformed_llava_row_lands_in_the_rejects_file_and_the_build_finishes(tiny_llava, tmp_path):
    """Before: AttributeError: 'str' object has no attribute 'get' (sources/llava.py) stopped the build."""
    from seva_plugin.pipeline.build import build

    names = make_images(tmp_path / "images", 2)
    rows = [llava_row("good", f"images/{names[0]}"), {"id": "bad", "image": f"images/{names[1]}", "conversations": ["oops"]}]
    (tmp_path / "llava.json").write_text(json.dumps(rows))
    config = {
        "model": tiny_llava,
        "template": "llava",
        "source": {"file": str(tmp_path / "llava.json"), "format": "llava"},
        "backend": {"name": "hf", "batch_size": 2, "max_new_tokens": 4},
        "filters": [],
        "output": {"dataset_dir": str(tmp_path / "data"), "name": "pairs"},
    }
    result = build(config, progress=False)
    with open(os.path.join(tmp_path / "data", "pairs.rejects.jsonl")) as fh:
        rejects = [json.loads(line) for line in fh]
    assert [r["id"] for r in rejects] == ["bad"] and "conversations[0]" in rejects[0]["reason"]
    assert result.kept == 1

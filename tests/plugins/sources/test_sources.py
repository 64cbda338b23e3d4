import json
import os

import pytest

from helpers import make_images
from seva_plugin.errors import ConfigError
from seva_plugin.pipeline.records import PromptRecord, Reject
from seva_plugin.registry import get_registry


def source(name, **params):
    return get_registry().get("source", name).build(params)


def records(src):
    return list(src.iter_records())


def test_jsonl_source_resolves_images_and_reports_bad_lines(tmp_path):
    make_images(tmp_path / "imgs", 2)
    lines = [
        json.dumps({"id": "a", "image": "imgs/img000.png", "question": "What is it?"}),
        "{not json",
        json.dumps({"id": "b", "images": ["imgs/img001.png", "imgs/img000.png"], "question": "<image>compare<image>"}),
        json.dumps({"id": "c", "image": "imgs/img001.png", "question": "  "}),
        json.dumps({"id": "d", "question": "no image"}),
        json.dumps({"id": "e", "images": ["imgs/img001.png", "imgs/img000.png"], "question": "<image> one marker"}),
    ]
    (tmp_path / "p.jsonl").write_bytes("\n".join(lines).encode() + b"\n\xff\xfe\n")
    out = records(source("jsonl", file=str(tmp_path / "p.jsonl")))
    a, bad_json, b, c, d, e, bad_utf8 = out
    assert isinstance(a, PromptRecord) and a.prompt == "<image>What is it?"
    assert a.images == [str(tmp_path / "imgs" / "img000.png")]
    assert isinstance(b, PromptRecord) and b.prompt.count("<image>") == 2 and len(b.images) == 2
    assert (bad_json.code, bad_json.id) == ("bad_json", "line-2") and "not valid JSON" in bad_json.reason
    assert (c.code, d.code, e.code, bad_utf8.code) == ("empty_question", "no_image", "image_count_mismatch", "bad_json")
    assert "UTF-8" in bad_utf8.reason


def llava_row(i, image, turns):
    convs = []
    for t in turns:
        convs += [{"from": "human", "value": t}, {"from": "gpt", "value": "x"}]
    return {"id": f"r{i}", "image": image, "conversations": convs}


@pytest.fixture
def llava_json(tmp_path):
    rows = [
        llava_row(
            i,
            f"ocr_vqa/images/{i}.jpg",
            [
                "<image>\nWho wrote this book?\nAnswer the question using a single word or phrase.",
                "What is the title?\nAnswer the question using a single word or phrase.",
                "Third?",
            ],
        )
        for i in range(6)
    ]
    rows += [
        llava_row(100 + i, f"textvqa/train_images/{i}.jpg", ["<image>\nProvide a one-sentence caption for the provided image.\nReference OCR token: STOP"])
        for i in range(5)
    ]
    rows += [llava_row(200 + i, f"coco/train2017/{i}.jpg", ["<image>\nWhat is this?"]) for i in range(3)]
    path = tmp_path / "mix.json"
    path.write_text(json.dumps(rows))
    return str(path)


def test_llava_seva_preset_reproduces_official_selection_and_cleaning(llava_json, tmp_path):
    src = source("llava", file=llava_json, preset="seva", ocr_vqa_images=4, textcaps_images=3, seed=0)
    out = records(src)
    ocr = [r for r in out if r.meta["subset"] == "ocr_vqa"]
    caps = [r for r in out if r.meta["subset"] == "textcaps"]
    assert len(ocr) == 8 and len(caps) == 3  # 4 images x 2 questions, 3 images x 1
    assert {r.question for r in ocr} == {"Who wrote this book?", "What is the title?"}
    assert all(r.prompt.startswith("<image>") and "\n" not in r.prompt for r in ocr)
    # TextCaps prompts keep their newline and OCR tokens: only "<image>\n" is stripped
    assert caps[0].question == "Provide a one-sentence caption for the provided image.\nReference OCR token: STOP"
    assert caps[0].images[0].startswith(os.path.join(str(tmp_path), "textvqa", "train_images"))
    # seeded: same seed, same selection; another seed, another selection
    assert [r.id for r in records(source("llava", file=llava_json, preset="seva", ocr_vqa_images=4, textcaps_images=3, seed=0))] == [r.id for r in out]
    assert [r.id for r in records(source("llava", file=llava_json, preset="seva", ocr_vqa_images=4, textcaps_images=3, seed=1))] != [r.id for r in out]


def test_llava_without_preset_uses_first_human_turn(llava_json):
    out = records(source("llava", file=llava_json))
    assert len(out) == 14 and out[0].prompt == "<image>\nWho wrote this book?\nAnswer the question using a single word or phrase."
    with pytest.raises(ConfigError, match="preset"):
        source("llava", file=llava_json, preset="sevaa")


def test_llamafactory_dataset_sharegpt_and_alpaca(tmp_path):
    make_images(tmp_path / "media", 2)
    sharegpt = [{"messages": [{"role": "user", "content": "<image>Describe."}, {"role": "assistant", "content": "ok"}], "images": ["img000.png"]}]
    alpaca = [{"instruction": "Describe", "input": "briefly", "output": "ok", "images": ["img001.png"]}]
    (tmp_path / "sg.json").write_text(json.dumps(sharegpt))
    (tmp_path / "al.jsonl").write_text("\n".join(json.dumps(r) for r in alpaca))
    info = {
        "sg": {
            "file_name": "sg.json",
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
        },
        "al": {"file_name": "al.jsonl", "columns": {"prompt": "instruction", "query": "input", "response": "output", "images": "images"}},
        "hub": {"hf_hub_url": "someone/thing"},
        "noimg": {"file_name": "sg.json"},
    }
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    (sg,) = records(source("llamafactory", dataset="sg", dataset_dir=str(tmp_path), media_dir=str(tmp_path / "media")))
    assert sg.prompt == "<image>Describe." and sg.images == [str(tmp_path / "media" / "img000.png")] and sg.id == "sg-0"
    (al,) = records(source("llamafactory", dataset="al", dataset_dir=str(tmp_path), media_dir=str(tmp_path / "media")))
    assert al.prompt == "<image>Describe\nbriefly"
    for name, message in [("missing", "Undefined dataset"), ("hub", "only local files"), ("noimg", "no 'images' column")]:
        with pytest.raises(ConfigError, match=message):
            records(source("llamafactory", dataset=name, dataset_dir=str(tmp_path)))


def test_rejects_are_records_not_exceptions(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"id": "x", "image": "nope.png"}\n')
    (rec,) = records(source("jsonl", file=str(tmp_path / "p.jsonl")))
    assert isinstance(rec, Reject) and rec.code == "empty_question"

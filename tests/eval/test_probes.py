"""Reading probes: POPE's question files as published (bad rows are rejects with reasons), COCO
instance annotations, object lists; one record per image with its distinct questions."""

from __future__ import annotations

import json

import pytest

from seva_plugin.errors import ConfigError
from seva_plugin.eval.config import probe_settings
from seva_plugin.eval.probes import load_probes, read_coco, read_pope

ROWS = [
    {"question_id": 0, "image": "COCO_val2014_000000548882.jpg", "image_id": 548882, "text": "Is there a dining table in the image?", "label": "yes"},
    {"question_id": 1, "image": "COCO_val2014_000000548882.jpg", "image_id": 548882, "text": "Is there a chair in the image?", "label": "no"},
    {"question_id": 2, "image": "COCO_val2014_000000008211.jpg", "image_id": 8211, "text": "Is there a motorcycle in the image?", "label": "Yes"},
]


def write_lines(path, rows) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def test_pope_files_as_published_and_their_bad_rows(tmp_path):
    bad = [
        "{not json",
        {"question_id": 3, "image": "x.jpg", "text": "Is there a cat?"},  # no label
        {"question_id": 4, "image": "x.jpg", "text": "Is there a cat?", "label": "maybe"},
        {"question_id": 5, "image": "x.jpg", "text": "<image>Is there a cat?", "label": "no"},
        {"question_id": 0, "image": "y.jpg", "text": "Is there a dog?", "label": "no"},  # question_id 0 again
    ]
    path = write_lines(tmp_path / "coco_pope_adversarial.json", ROWS + bad)
    files = probe_settings({"format": "pope", "file": path})["file"]
    assert files == {"adversarial": path}
    out = read_pope(files, str(tmp_path / "val2014"))
    assert [(p.setting, p.question_id, p.label) for p in out.probes] == [("adversarial", 0, "yes"), ("adversarial", 1, "no"), ("adversarial", 2, "yes")]
    assert out.probes[0].path == str(tmp_path / "val2014" / "COCO_val2014_000000548882.jpg")
    reasons = [r.reason for r in out.rejects]
    assert [r.code for r in out.rejects] == ["bad_probe"] * 4 + ["duplicate_id"]
    for expected in ("4 is not JSON", "5 has no label", "label must be yes or no, got 'maybe'", "text holds an <image> marker", "question_id 0 repeats"):
        assert any(expected in r for r in reasons), (expected, reasons)


def test_records_are_images_with_their_distinct_questions(tmp_path):
    random_file = write_lines(tmp_path / "coco_pope_random.json", ROWS)
    popular_file = write_lines(tmp_path / "coco_pope_popular.json", [{**ROWS[0]}, {**ROWS[1], "text": "Is there a bowl in the image?"}])
    spec = probe_settings({"format": "pope", "file": [random_file, popular_file], "suffix": "\nAnswer yes or no."})
    probes = load_probes(spec, seed=0)
    assert probes.settings == ["random", "popular"]
    records = list(probes.records())
    assert [r.id for r in records] == ["COCO_val2014_000000548882.jpg", "COCO_val2014_000000008211.jpg"]
    assert records[0].meta["questions"] == [  # the shared present question once
        "<image>Is there a dining table in the image?\nAnswer yes or no.",
        "<image>Is there a chair in the image?\nAnswer yes or no.",
        "<image>Is there a bowl in the image?\nAnswer yes or no.",
    ]


def test_settings_named_by_a_mapping_or_a_rows_category(tmp_path):
    path = write_lines(tmp_path / "llava_pope_test.jsonl", [{**r, "category": "popular"} for r in ROWS])
    assert read_pope({"mine": path}, None).settings == ["popular"]
    with pytest.raises(ConfigError, match="are both setting 'x'"):
        probe_settings({"format": "pope", "file": ["a/x.json", "b/x.json"]})
    with pytest.raises(ConfigError, match="probes file not found"):
        load_probes(probe_settings({"format": "pope", "file": str(tmp_path / "none.json")}), 0)


def test_coco_instance_annotations(tmp_path):
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}, {"id": 3, "file_name": "c.jpg"}],
        "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}, {"id": 62, "name": "chair"}],
        "annotations": [
            {"image_id": 1, "category_id": 18},
            {"image_id": 1, "category_id": 1},
            {"image_id": 1, "category_id": 18},
            {"image_id": 2, "category_id": 62},
        ],
    }
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    images, _ = read_coco(str(tmp_path / "instances.json"), str(tmp_path / "val"))
    assert [(im.image, im.objects) for im in images] == [("a.jpg", ("dog", "person")), ("b.jpg", ("chair",)), ("c.jpg", ())]
    spec = probe_settings({"format": "coco", "annotations": str(tmp_path / "instances.json"), "image_dir": str(tmp_path / "val"), "objects_per_image": 1})
    probes = load_probes({**spec, "num_images": 2}, seed=0).probes
    assert {p.image for p in probes} == {"a.jpg", "b.jpg"} and len(probes) == 3 * 2 * 2
    (tmp_path / "broken.json").write_text(json.dumps({"images": []}))
    with pytest.raises(ConfigError, match="is not COCO instance annotations"):
        read_coco(str(tmp_path / "broken.json"), str(tmp_path))


def test_an_objects_file_with_bad_rows(tmp_path):
    lines = [{"image": "a.png", "objects": ["cat", "dog", "cat"]}, {"image": "b.png", "objects": "cat"}, "[1]"]
    lines += [{"image": "c.png", "objects": ["sofa", "cat"]}, {"image": "d.png", "objects": ["lamp", "rug", "vase"]}]
    path = write_lines(tmp_path / "objects.jsonl", lines)
    spec = probe_settings({"format": "jsonl", "file": path, "num_images": None, "objects_per_image": 2, "settings": ["popular"]})
    out = load_probes(spec, seed=0)
    assert [r.id for r in out.rejects] == ["objects.jsonl:2", "objects.jsonl:3"]
    assert {p.image for p in out.probes} == {"a.png", "c.png", "d.png"}  # a.png: cat, dog (the repeat dropped)
    assert out.probes[0].path == str(tmp_path / "a.png")

"""A resume notices a changed source (issue 26, items 6 and 9): each finished record's inputs (its
prompt, image paths and image files) are fingerprinted in the journal, and a rerun refuses, naming
the records, where they changed; records no longer in the source, or past a lower ``limit``, are
not written. Scripted backend: no model."""

from __future__ import annotations

import json
import os

import pytest
from PIL import Image

from helpers import read_jsonl, scripted_backend, scripted_config, use_backends
from seva_plugin.commands.finished_build import finished_build
from seva_plugin.errors import ConfigError
from seva_plugin.pipeline.build import build


@pytest.fixture
def config(tmp_path, monkeypatch) -> dict:
    use_backends(monkeypatch, scripted_backend())
    return scripted_config(tmp_path, n=6)


def source_lines(config) -> list[dict]:
    return read_jsonl(config["source"]["file"])


def write_source(config, lines: list[dict]) -> None:
    with open(config["source"]["file"], "w") as fh:
        fh.writelines(json.dumps(line) + "\n" for line in lines)


def test_an_edited_question_is_refused_naming_the_record(config):
    """The edited question used to keep its old text (and its old answers) in the data."""
    build({**config, "limit": 3}, progress=False)  # as a killed build leaves it: p0-p2 finished
    lines = source_lines(config)
    lines[1]["question"] = "What shape is it?"
    write_source(config, lines)
    with pytest.raises(ConfigError, match=r"changed since .* built: p1 \(its prompt or image paths\).*output.overwrite=true"):
        build(config, progress=False)
    assert build({**config, "output": {**config["output"], "overwrite": True}}, progress=False).kept == 6


def test_a_replaced_image_is_refused_naming_the_record_and_the_image(config, tmp_path):
    """A replaced image was embedded next to answers about the old one."""
    build({**config, "limit": 3}, progress=False)
    image = os.path.join(os.path.dirname(config["source"]["file"]), "images", "img002.png")
    Image.new("RGB", (48, 40), (1, 2, 3)).save(image)
    with pytest.raises(ConfigError, match=rf"p2 \(image {image} changed\)"):
        build(config, progress=False)
    os.unlink(image)
    with pytest.raises(ConfigError, match=rf"p2 \(image {image} is gone\)"):
        build(config, progress=False)


def test_a_touched_but_unchanged_image_resumes(config):
    build({**config, "limit": 3}, progress=False)
    image = os.path.join(os.path.dirname(config["source"]["file"]), "images", "img000.png")
    data = open(image, "rb").read()
    open(image, "wb").write(data)  # a new modification time, the same bytes
    assert build(config, progress=False).kept == 6


def test_a_record_deleted_from_the_source_leaves_the_data(config):
    first = build(config, progress=False)
    write_source(config, [line for line in source_lines(config) if line["id"] != "p3"])
    result = build(config, progress=False)
    assert [r["id"] for r in read_jsonl(result.data_file)] == ["p0", "p1", "p2", "p4", "p5"] and result.kept == 5
    manifest = json.load(open(first.manifest_file))
    assert manifest["counts"]["records"] == 5 and manifest["journal"] == {"records": 6, "pairs": 6, "not_in_this_build": 1}


def test_a_lower_limit_over_a_finished_build_writes_that_many(config):
    """A rerun with limit=100 over a finished 600-record build wrote 600 pairs, its manifest saying limit: 100."""
    build(config, progress=False)
    result = build({**config, "limit": 2}, progress=False)
    assert [r["id"] for r in read_jsonl(result.data_file)] == ["p0", "p1"] and result.kept == 2
    manifest = json.load(open(result.manifest_file))
    assert manifest["config"]["limit"] == 2 and manifest["counts"]["records"] == 2 and manifest["journal"]["not_in_this_build"] == 4
    assert "4 finished records of the journal are not in this build" in result.summary()
    assert finished_build(result.dataset_dir, "ds").manifest["counts"]["kept"] == 2  # finished: seva export takes it
    assert build(config, progress=False).kept == 6  # and back, without generating anything again

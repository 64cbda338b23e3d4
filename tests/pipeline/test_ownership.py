"""Which files a build or an export may replace (issue 26, items 1-3): names that cannot meet another
dataset's files, and only files a manifest of ours lists, never a user's own."""

from __future__ import annotations

import os

import pytest

from helpers import scripted_backend, scripted_config, use_backends
from seva_plugin.errors import ConfigError
from seva_plugin.pipeline.build import Build, build
from seva_plugin.pipeline.dataset_files import DatasetFiles, check_name


@pytest.fixture
def scripted(monkeypatch):
    return use_backends(monkeypatch, scripted_backend())


@pytest.fixture
def config(tmp_path) -> dict:
    return scripted_config(tmp_path)


def named(config: dict, name: str, **output) -> dict:
    return {**config, "output": {**config["output"], "name": name, **output}}


# -- item 1: no name meets another dataset's files ---------------------------------------------------
@pytest.mark.parametrize(
    ("name", "other"),
    [
        ("x.rejects", "x.rejects.jsonl"),  # x.rejects's data would be x's rejects file
        ("x.jsonl", "x.jsonl"),  # a Parquet x.jsonl/ would sit where x's data file is
        ("x.manifest.json", "x.manifest.json"),
        ("x.export_rejects", "x.export_rejects.jsonl"),
        ("x.images", "x.images"),
        ("X.JSONL", "X.jsonl"),
        ("dataset_info.json", "dataset_info.json"),
    ],
)
def test_a_name_that_would_meet_another_datasets_files_is_refused(name, other):
    with pytest.raises(ConfigError, match="seva-plugin names") as err:
        check_name(name, "output.name")
    assert f"'{name}'" in str(err.value) and other in str(err.value)


def test_building_x_after_x_rejects_cannot_empty_it(config, scripted):
    """It used to: x.rejects wrote its 4 pairs to x.rejects.jsonl, which x's build then replaced with its (empty) rejects."""
    with pytest.raises(ConfigError, match="x.rejects"):
        Build(named(config, "x.rejects"))
    assert build(named(config, "x"), progress=False).kept == 4
    assert os.path.getsize(DatasetFiles(config["output"]["dataset_dir"], "x").rejects) == 0
    check_name("x.rejected_by_hand")  # only the exact endings are reserved

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


# -- item 2: a file seva-plugin did not write is never replaced -----------------------------------------
@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("which", ["data", "rejects", "manifest"])
def test_a_users_file_is_never_replaced(config, scripted, which, overwrite):
    """`echo '{"id": "precious"}' > DIR/mine.jsonl; seva build ... output.name=mine` replaced it."""
    files = DatasetFiles(config["output"]["dataset_dir"], "mine")
    os.makedirs(files.dataset_dir)
    path = getattr(files, which)
    with open(path, "w") as fh:
        fh.write('{"id": "precious"}\n')
    with pytest.raises(ConfigError, match=rf"{path} exists and seva-plugin did not write it .*never replaced"):
        Build(named(config, "mine", overwrite=overwrite))
    assert open(path).read() == '{"id": "precious"}\n'


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_users_file_in_a_parquet_folder_is_never_replaced(config, scripted, overwrite):
    files = DatasetFiles(config["output"]["dataset_dir"], "pq")
    os.makedirs(os.path.join(files.dataset_dir, "pq", "data"))
    mine = os.path.join(files.dataset_dir, "pq", "data", "notes.txt")
    open(mine, "w").write("mine")
    with pytest.raises(ConfigError, match="notes.txt exists and seva-plugin did not write it"):
        Build(named(config, "pq", format="parquet", overwrite=overwrite))
    assert open(mine).read() == "mine"


def test_a_parquet_name_where_a_file_is_fails_before_generating(config, scripted):
    """A Parquet `z` where `z` is a file used to fail in the writer, after every pair was generated."""
    os.makedirs(config["output"]["dataset_dir"])
    open(os.path.join(config["output"]["dataset_dir"], "z"), "w").write("a file")
    with pytest.raises(ConfigError, match="z exists and seva-plugin did not write it"):
        Build(named(config, "z", format="parquet"))


def test_its_own_files_are_rewritten_by_a_rerun_and_a_changed_one_only_with_overwrite(config, scripted):
    first = build(named(config, "own"), progress=False)
    assert build(named(config, "own"), progress=False).kept == 4  # a rerun rewrites its own outputs
    with open(first.data_file, "a") as fh:
        fh.write('{"id": "added by hand"}\n')
    with pytest.raises(ConfigError, match=r"own.jsonl was changed since seva-plugin wrote it .*overwrite"):
        Build(named(config, "own"))
    assert build(named(config, "own", overwrite=True), progress=False).kept == 4
    assert "added by hand" not in open(first.data_file).read()


def test_a_build_of_another_config_replaces_a_finished_one_only_with_overwrite(config, scripted):
    """Without the journal (moved away, or a copied folder) nothing else stopped it."""
    result = build(named(config, "other"), progress=False)
    os.unlink(DatasetFiles(result.dataset_dir, "other").journal)
    with pytest.raises(ConfigError, match=r"records a build of 'other' with another config \(changed: seed \(0 -> 1\)\).*output.overwrite=true"):
        Build({**named(config, "other"), "seed": 1})
    assert build({**named(config, "other", overwrite=True), "seed": 1}, progress=False).kept == 4


def test_a_write_killed_before_its_manifest_does_not_lock_the_dataset_out(config, scripted, monkeypatch):
    """The data is written before the manifest: a kill between them must leave the rerun free to replace it."""
    from seva_plugin.pipeline import build as build_module

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build_module, "manifest", killed)
    with pytest.raises(KeyboardInterrupt):
        build(named(config, "cut"), progress=False)
    assert os.path.exists(DatasetFiles(config["output"]["dataset_dir"], "cut").data)
    monkeypatch.undo()
    use_backends(monkeypatch, scripted_backend())
    assert build(named(config, "cut"), progress=False).kept == 4


def test_a_parquet_z_jsonl_beside_a_jsonl_z_is_refused_before_generating(config, scripted):
    """It failed only in the writer, after every pair was generated (issue 26, item 14)."""
    build(named(config, "z"), progress=False)
    with pytest.raises(ConfigError, match=r"output.name 'z.jsonl' ends in '.jsonl'.*z.jsonl is the data file of dataset 'z'"):
        Build(named(config, "z.jsonl", format="parquet"))


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_users_file_where_the_sft_set_goes_is_never_replaced(config, scripted, overwrite):
    """`output.sft: true` writes NAME_sft.jsonl: a file of that name seva-plugin did not write is refused
    (dataset `x_sft`'s data, or the user's own), before any model loads."""
    files = DatasetFiles(config["output"]["dataset_dir"], "mine")
    os.makedirs(files.dataset_dir)
    with open(files.sft, "w") as fh:
        fh.write('{"id": "precious"}\n')
    with pytest.raises(ConfigError, match=rf"{files.sft} exists and seva-plugin did not write it"):
        Build(named(config, "mine", sft=True, overwrite=overwrite))
    assert open(files.sft).read() == '{"id": "precious"}\n'
    Build(named(config, "mine", overwrite=overwrite))  # without output.sft the file is none of the build's business

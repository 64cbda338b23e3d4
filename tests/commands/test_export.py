"""``seva export``: a finished build converted to Parquet, TRL or JSONL without generating, its provenance
kept; unfinished builds refused with a message that says what to do; unreadable images reported per record."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pyarrow.parquet as pq
import pytest
from writer_pairs import front_matter

from helpers import make_images, read_jsonl
from seva_plugin.commands.cli import main
from seva_plugin.commands.export import export
from seva_plugin.commands.finished_build import UnfinishedBuild
from seva_plugin.errors import ConfigError
from seva_plugin.pipeline.build import build

NAME = "seva_src"


@pytest.fixture(scope="module")
def built(tiny_llava, tmp_path_factory) -> str:
    """A finished JSONL build of 6 pairs; its images lie inside the dataset_dir, so copies of it are whole."""
    root = tmp_path_factory.mktemp("export_src")
    data = root / "data"
    names = make_images(data / "images", 6)
    with open(root / "prompts.jsonl", "w") as fh:
        for i, name in enumerate(names):
            fh.write(json.dumps({"id": f"p{i}", "image": f"data/images/{name}", "question": "What colour is the square?"}) + "\n")
    config = {
        "model": tiny_llava,
        "template": "llava",
        "source": {"file": str(root / "prompts.jsonl"), "format": "jsonl"},
        "augment": {"name": "diffusion_noise", "step": 800},
        "backend": {"name": "hf", "batch_size": 3, "max_new_tokens": 8},
        "filters": [],  # keep all 6, whatever the random twin answers
        "output": {"dataset_dir": str(data), "name": NAME, "license": "cc-by-4.0"},
    }
    assert build(config, progress=False).kept == 6
    return str(data)


@pytest.fixture
def source(built, tmp_path) -> str:
    """A private copy of the finished build (tests change it)."""
    return str(shutil.copytree(built, tmp_path / "src"))


def source_pairs(data_dir: str) -> dict[str, dict]:
    return {r["id"]: r for r in read_jsonl(os.path.join(data_dir, f"{NAME}.jsonl"))}


def test_export_to_parquet_keeps_pairs_and_provenance(source, tmp_path):
    from datasets import load_dataset

    out = tmp_path / "out"
    result = export(source, NAME, "parquet", str(out), shard_size=4)
    assert result.exported == 6 and result.left_out == {}
    assert sorted(os.listdir(out / NAME / "data")) == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    assert json.load(open(out / "dataset_info.json"))[NAME]["file_name"] == f"{NAME}/data"

    original = source_pairs(source)
    ds = load_dataset(str(out / NAME), split="train")
    assert sorted(ds["id"]) == sorted(original)
    for row in pq.read_table(out / NAME / "data").to_pylist():
        want = original[row["id"]]
        assert row["conversations"] == want["conversations"] and row["chosen"] == want["chosen"] and row["rejected"] == want["rejected"]
        assert row["images"][0]["bytes"] == open(os.path.join(source, want["images"][0]), "rb").read()
        assert json.loads(row["provenance"]) == want["provenance"]

    built_manifest = json.load(open(os.path.join(source, f"{NAME}.manifest.json")))
    manifest = json.load(open(out / f"{NAME}.manifest.json"))
    for key in ("config", "fingerprint", "versions", "seva_plugin", "timings"):
        assert manifest[key] == built_manifest[key]
    [step] = manifest["exports"]
    assert step["from_format"] == "jsonl" and step["format"] == "parquet" and step["exported"] == 6 and len(step["from_manifest_sha256"]) == 64
    card = front_matter(out / NAME / "README.md")
    assert card["license"] == "cc-by-4.0"  # the build's output.license
    text = open(out / NAME / "README.md").read()
    assert built_manifest["config"]["model"] in text and built_manifest["fingerprint"] in text and "jsonl -> parquet" in text


def test_export_to_trl(source, tmp_path):
    from datasets import load_dataset
    from trl.data_utils import is_conversational

    result = export(source, NAME, "trl", str(tmp_path / "out"), licence="other")
    assert result.exported == 6
    ds = load_dataset(str(tmp_path / "out" / NAME), split="train")
    assert all(is_conversational(example) for example in ds)
    assert ds[0]["prompt"][0]["content"][0] == {"type": "image", "text": None}
    assert front_matter(tmp_path / "out" / NAME / "README.md")["license"] == "other"
    assert not os.path.exists(tmp_path / "out" / "dataset_info.json")


def test_parquet_export_exported_again_to_jsonl_writes_the_images_out(source, tmp_path):
    export(source, NAME, "parquet", str(tmp_path / "pq"))
    os.rename(os.path.join(source, "images"), os.path.join(source, "gone"))  # the Parquet copy no longer needs them
    result = export(str(tmp_path / "pq"), NAME, "jsonl", str(tmp_path / "again"))
    assert result.exported == 6 and result.source == "parquet"

    original = source_pairs(source)
    for record in read_jsonl(tmp_path / "again" / f"{NAME}.jsonl"):
        [path] = record["images"]
        assert path.startswith(f"{NAME}_images/")  # relative to the dataset_dir, as LLaMA-Factory resolves it
        want = os.path.join(source, "gone", os.path.basename(original[record["id"]]["images"][0]))
        assert open(tmp_path / "again" / path, "rb").read() == open(want, "rb").read()
        assert record["chosen"] == original[record["id"]]["chosen"]
    manifest = json.load(open(tmp_path / "again" / f"{NAME}.manifest.json"))
    assert [s["format"] for s in manifest["exports"]] == ["parquet", "jsonl"]


@pytest.mark.parametrize("target", ["parquet", "trl", "jsonl"])
def test_an_image_missing_at_export_is_reported_per_record(source, tmp_path, target):
    missing = os.path.join(source, "images", "img002.png")
    os.unlink(missing)
    result = export(source, NAME, target, str(tmp_path / "out"))
    assert result.exported == 5 and result.left_out == {"missing_file": 1}
    [reject] = read_jsonl(result.rejects_path)
    assert reject["id"] == "p2" and missing in reject["reason"]
    assert "left out: missing_file 1" in result.summary()
    assert json.load(open(result.manifest_path))["counts"]["skipped_at_export"] == {"missing_file": 1}


def test_a_copied_build_without_its_journal_exports(source, tmp_path):
    shutil.rmtree(os.path.join(source, ".seva"))
    assert export(source, NAME, "trl", str(tmp_path / "out")).exported == 6


def append_committed(journal: str, entry: dict) -> None:
    with open(journal, "ab") as fh:
        fh.write(json.dumps(entry).encode() + b"\n" + b'{"kind": "commit"}\n')


def test_unfinished_builds_are_refused(source, tmp_path):
    journal = os.path.join(source, ".seva", f"{NAME}.journal.jsonl")
    manifest = os.path.join(source, f"{NAME}.manifest.json")

    # a later run (a larger limit, say) has committed more work than the data holds
    append_committed(journal, {"kind": "pair", "id": "p6", "prompt": "<image>?", "images": [], "chosen": "a", "rejected": "b"})
    with pytest.raises(
        UnfinishedBuild, match=r"has not finished: its journal holds 7 pairs \(7 records\) but the data and manifest hold 6 .*rerun the same `seva build`"
    ):
        export(source, NAME, "parquet", str(tmp_path / "a"))

    # no manifest yet: the build is running or was interrupted
    os.unlink(manifest)
    with pytest.raises(UnfinishedBuild, match="has not finished: its journal .* holds 7 finished record.* no manifest yet"):
        export(source, NAME, "parquet", str(tmp_path / "b"))
    assert not os.path.exists(tmp_path / "b")


def test_a_running_build_holds_the_export_off(source, tmp_path):
    from seva_plugin.pipeline.dataset_files import DatasetFiles
    from seva_plugin.pipeline.files import OutputBusy, output_lock

    with output_lock(DatasetFiles(source, NAME).lock, "the build"), pytest.raises(OutputBusy, match=f"pid {os.getpid()}"):
        export(source, NAME, "parquet", str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")


def test_a_new_config_started_since_is_refused(source, tmp_path):
    journal = os.path.join(source, ".seva", f"{NAME}.journal.jsonl")
    lines = open(journal, "rb").read().split(b"\n", 1)
    open(journal, "wb").write(json.dumps({"kind": "header", "fingerprint": "another"}).encode() + b"\n" + lines[1])
    with pytest.raises(UnfinishedBuild, match="with a different config has started"):
        export(source, NAME, "jsonl", str(tmp_path / "out"))


def test_data_that_disagrees_with_the_manifest_is_refused(source, tmp_path):
    data = os.path.join(source, f"{NAME}.jsonl")
    lines = open(data).readlines()
    open(data, "w").writelines(lines[:4])
    with pytest.raises(UnfinishedBuild, match="holds 4 pairs but the manifest .* counts 6"):
        export(source, NAME, "parquet", str(tmp_path / "out"))


def test_no_such_build_lists_the_builds_there(source, tmp_path):
    with pytest.raises(UnfinishedBuild, match=f"no build named 'nope' .* Builds there: {NAME}"):
        export(source, "nope", "parquet", str(tmp_path / "out"))


def test_refuses_to_replace_what_it_reads_or_an_earlier_export(source, tmp_path):
    with pytest.raises(ConfigError, match="would replace the build it reads"):
        export(source, NAME, "parquet", source)
    result = export(source, NAME, "parquet", source, out_name="seva_src_pq")  # beside it, under another name
    assert json.load(open(os.path.join(source, "dataset_info.json")))["seva_src_pq"]["file_name"] == "seva_src_pq/data"
    assert result.exported == 6
    with pytest.raises(ConfigError, match="Pass --overwrite"):
        export(source, NAME, "parquet", source, out_name="seva_src_pq")
    assert export(source, NAME, "parquet", source, out_name="seva_src_pq", overwrite=True).exported == 6
    with pytest.raises(ConfigError, match="--shard-size and --license apply to the Parquet targets"):
        export(source, NAME, "jsonl", str(tmp_path / "j"), shard_size=2)


def test_cli(source, tmp_path, capsys):
    assert main(["export", source, "--name", NAME, "--to", "trl", "--out", str(tmp_path / "out"), "--shard-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "6 pairs exported (jsonl -> trl)" in out and "left out: none" in out
    assert len(os.listdir(tmp_path / "out" / NAME / "data")) == 3

    os.unlink(os.path.join(source, f"{NAME}.manifest.json"))
    assert main(["export", source, "--name", NAME, "--to", "parquet", "--out", str(tmp_path / "x")]) == 2
    assert "error: the build of 'seva_src'" in capsys.readouterr().err


# -- --exclude: the pairs curated out in seva inspect's gallery -----------------------------------
@pytest.mark.parametrize(
    "listing",
    [
        '{"dataset": "seva_src", "fingerprint": "f", "exclude": ["p1", "p4", "gone"]}\n',  # seva inspect's download
        '["p1", "p4", "gone"]',
        "# curated by hand\np1\n\n  p4  \ngone\n",
    ],
)
@pytest.mark.parametrize("target", ["jsonl", "parquet"])
def test_exclude_leaves_the_listed_pairs_out_and_records_them(source, tmp_path, listing, target):
    listed = tmp_path / "exclude.list"
    listed.write_text(listing)
    result = export(source, NAME, target, str(tmp_path / "out"), exclude=str(listed))
    assert result.exported == 4 and result.left_out == {}
    from seva_plugin.plugins.writers.readback import iter_pairs

    assert sorted(p["id"] for p in iter_pairs(str(tmp_path / "out"), NAME, target)) == ["p0", "p2", "p3", "p5"]
    manifest = json.load(open(result.manifest_path))
    step = manifest["exports"][-1]
    assert step["excluded"] == {
        "file": str(listed),
        "sha256": hashlib.sha256(listing.encode()).hexdigest(),
        "ids": ["gone", "p1", "p4"],
        "pairs": 2,
        "unmatched": ["gone"],
    }
    assert manifest["counts"]["kept"] == 4 and manifest["counts"]["excluded_at_export"] == 2
    assert f"excluded: 2 pair(s) listed in {listed} (1 of its ids matched no pair)" in result.summary()
    assert read_jsonl(result.rejects_path) == []  # curated out is not an unreadable pair


def test_a_bad_exclusion_list_is_a_clear_error(source, tmp_path):
    bad = tmp_path / "bad.json"
    for text, message in [
        ('{"exclude": "p1"}', "expected a list of pair ids"),
        ("[1, {}]", "expected a list of pair ids"),
        ("[p1", "looks like JSON but is not"),
    ]:
        bad.write_text(text)
        with pytest.raises(ConfigError, match=message):
            export(source, NAME, "jsonl", str(tmp_path / "out"), exclude=str(bad))
    with pytest.raises(ConfigError, match="--exclude .*nothing.json: cannot read it"):
        export(source, NAME, "jsonl", str(tmp_path / "out"), exclude=str(tmp_path / "nothing.json"))
    assert not os.path.exists(tmp_path / "out" / f"{NAME}.manifest.json")


def test_cli_exclude(source, tmp_path, capsys):
    listed = tmp_path / "x.txt"
    listed.write_text("p0\n")
    assert main(["export", source, "--name", NAME, "--to", "jsonl", "--out", str(tmp_path / "out"), "--exclude", str(listed)]) == 0
    assert "5 pairs exported" in capsys.readouterr().out
    assert [r["id"] for r in read_jsonl(tmp_path / "out" / f"{NAME}.jsonl")] == ["p1", "p2", "p3", "p4", "p5"]

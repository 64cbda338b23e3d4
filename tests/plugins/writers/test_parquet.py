"""``output.format: parquet``: embedded images with the Hub preference sets' features, shards, a dataset
card, and a real LLaMA-Factory train on a mix with an embedded-image set (which path-based JSONL cannot do)."""

from __future__ import annotations

import json
import os
import stat

import pyarrow.parquet as pq
import pytest
from PIL import Image
from writer_pairs import front_matter, make_pairs, manifest_for

from helpers import make_images, run_train
from seva_plugin.errors import ConfigError
from seva_plugin.pipeline.build import build
from seva_plugin.pipeline.files import umask
from seva_plugin.plugins.writers.llamafactory import LlamaFactoryWriter
from seva_plugin.plugins.writers.parquet_folder import ParquetFolder
from seva_plugin.plugins.writers.rows import pair_from_sharegpt, sharegpt_features

RECIPE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "recipes", "tiny_dpo_cpu.yaml")


def write(tmp_path, pairs, **keys) -> tuple[LlamaFactoryWriter, dict]:
    os.makedirs(tmp_path / "data", exist_ok=True)  # the host (a build, an export) makes the dataset_dir
    writer = LlamaFactoryWriter(str(tmp_path / "data"), "seva_pq", format="parquet", **keys)
    writer.prepare(overwrite=False)
    written = writer.write(iter(pairs), overwrite=False)
    files = written.manifest_files()  # the manifest's "files", as a build records them
    writer.finish(manifest_for(files, written.records, tmp_path / "data", "seva_pq"))
    return writer, files


def test_parquet_shards_embed_the_image_bytes_with_hub_features(tmp_path):
    from datasets import load_dataset

    pairs = make_pairs(tmp_path / "images", 7)
    writer, files = write(tmp_path, pairs, shard_size=3)
    data_dir = tmp_path / "data" / "seva_pq" / "data"
    assert sorted(os.listdir(data_dir)) == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    assert [s["records"] for s in files["data"]["shards"]] == [3, 3, 1]
    assert files["data"]["records"] == 7 and files["data"]["format"] == "parquet" and files["data"]["skipped"] == []
    assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o777 & ~umask()  # readable by others as the umask allows

    # registered as a folder LLaMA-Factory loads: only shards in it, the card one level up
    info = json.load(open(tmp_path / "data" / "dataset_info.json"))
    assert info["seva_pq"]["file_name"] == "seva_pq/data"
    assert info["seva_pq"]["columns"] == {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "images": "images"}

    ds = load_dataset(str(data_dir), split="train")
    assert ds.features == sharegpt_features()
    assert repr(ds.features["images"]) == "List(Image(mode=None, decode=True))"  # Sequence(Image()), as llamafactory/RLHF-V
    row = ds[4]
    assert row["id"] == "p4" and row["conversations"] == [{"from": "human", "value": "<image>What colour is the square?"}]
    assert row["chosen"] == {"from": "gpt", "value": "red 4"} and json.loads(row["provenance"])["seed"] == 4
    # the file's bytes unchanged: the same pixels the JSONL twin trains on
    raw = pq.read_table(data_dir / "train-00001-of-00003.parquet").column("images").to_pylist()[1][0]
    assert raw["bytes"] == open(pairs[4]["images"][0], "rb").read() and raw["path"] == "img004.png"
    assert list(row["images"][0].getdata()) == list(Image.open(pairs[4]["images"][0]).convert("RGB").getdata())


def test_rows_are_written_a_row_group_at_a_time(tmp_path):
    """Memory stays bounded: a shard is streamed in row groups of at most 100 rows, not built whole."""
    pairs = make_pairs(tmp_path / "images", 4)
    many = ({**pairs[i % 4], "id": f"p{i}"} for i in range(250))  # a generator: never a list in memory
    folder = ParquetFolder(str(tmp_path / "out"), sharegpt_features(), shard_size=240)
    from seva_plugin.plugins.writers.parquet_folder import embedded_rows
    from seva_plugin.plugins.writers.rows import sharegpt_row

    data = folder.write(embedded_rows(many, sharegpt_row, []))
    assert [s["records"] for s in data["shards"]] == [240, 10]
    meta = pq.ParquetFile(os.path.join(folder.data_dir, "train-00000-of-00002.parquet")).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [100, 100, 40]


def test_a_missing_image_skips_that_pair_and_says_why(tmp_path):
    pairs = make_pairs(tmp_path / "images", 4)
    os.unlink(pairs[2]["images"][0])
    _, files = write(tmp_path, pairs)
    assert files["data"]["records"] == 3
    [skipped] = files["data"]["skipped"]
    assert skipped["id"] == "p2" and skipped["code"] == "missing_file" and "img002.png" in skipped["reason"]


def test_the_card_is_ready_for_the_hub(tmp_path):
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    pairs = make_pairs(tmp_path / "images", 5)
    write(tmp_path, pairs, shard_size=2, license="cc-by-4.0")
    root = tmp_path / "data" / "seva_pq"
    meta = front_matter(root / "README.md")
    assert meta["license"] == "cc-by-4.0"
    assert "seva-plugin" in meta["tags"] and "llama-factory" in meta["tags"]
    assert meta["task_categories"] == ["image-text-to-text", "visual-question-answering"]
    assert meta["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    assert meta["dataset_info"]["splits"][0]["num_examples"] == 5
    card = DatasetCard.load(root / "README.md")  # the parser push_to_hub and the Hub use
    assert card.data.license == "cc-by-4.0" and card.data.size_categories == ["n<1K"]
    assert "tiny/llava" in card.text and "pairs in this set: **5**" in card.text
    # the folder itself loads with no arguments: the card's configs and features drive it
    ds = load_dataset(str(root), split="train")
    assert len(ds) == 5 and ds.features == sharegpt_features()


def test_a_failed_write_keeps_the_previous_data(tmp_path):
    pairs = make_pairs(tmp_path / "images", 3)
    writer, files = write(tmp_path, pairs)
    before = files["data"]["shards"]

    def broken():
        yield pairs[0]
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError):
        writer.write(broken(), overwrite=False)
    root = tmp_path / "data" / "seva_pq"
    assert sorted(os.listdir(root)) == ["README.md", "data"]  # no temporary folder left behind
    assert sorted(os.listdir(root / "data")) == [s["file"] for s in before]
    assert pq.ParquetFile(root / "data" / before[0]["file"]).metadata.num_rows == 3


def test_a_rewrite_with_fewer_shards_leaves_no_stale_shard(tmp_path):
    pairs = make_pairs(tmp_path / "images", 5)
    write(tmp_path, pairs, shard_size=2)
    writer = LlamaFactoryWriter(str(tmp_path / "data"), "seva_pq", format="parquet", shard_size=10)
    writer.write(iter(pairs), overwrite=False)
    assert os.listdir(tmp_path / "data" / "seva_pq" / "data") == ["train-00000-of-00001.parquet"]


def test_replaces_only_what_it_wrote_in_its_folder(tmp_path):
    root = tmp_path / "data" / "seva_pq"
    root.mkdir(parents=True)
    (root / "notes.txt").write_text("mine")  # beside the card and data/: never touched, never in the way
    (root / "README.md").write_text("my card")
    writer = LlamaFactoryWriter(str(tmp_path / "data"), "seva_pq", format="parquet")
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match="README.md exists and seva-plugin did not write it"):
            writer.prepare(overwrite=overwrite)
    (root / "README.md").unlink()
    pairs = make_pairs(tmp_path / "images", 2)
    write(tmp_path, pairs)
    assert (root / "notes.txt").read_text() == "mine"
    write(tmp_path, pairs)  # a card and shards its manifest lists are replaced


@pytest.mark.parametrize(
    ("keys", "message"), [({"format": "arrow"}, "output.format must be jsonl or parquet"), ({"shard_size": 0}, "output.shard_size must be a positive")]
)
def test_bad_output_keys_are_refused(tmp_path, keys, message):
    with pytest.raises(ConfigError, match=message):
        LlamaFactoryWriter(str(tmp_path), "x", **{"format": "parquet", **keys})


def test_round_trip_gives_the_pair_back(tmp_path):
    from seva_plugin.plugins.writers.rows import sharegpt_row

    pair = make_pairs(tmp_path / "images", 1)[0] | {"scores": {"margin": 0.5}}
    back = pair_from_sharegpt(json.loads(json.dumps(sharegpt_row(pair, pair["images"]))))
    assert back == pair


# -- a real build, and a real LLaMA-Factory train on the mix ------------------------------------
# What LLaMA-Factory's `rlhf_v` entry loads (hf_hub_url llamafactory/RLHF-V, one rlhf-v.parquet):
# sharegpt ranking columns with the images embedded as Sequence(Image()).
def rlhf_v_features():
    from datasets import Features, Image, List, Value

    turn = {"from": Value("string"), "value": Value("string")}
    return Features({"conversations": List(turn), "chosen": turn, "rejected": turn, "images": List(Image())})


def make_rlhf_v_standin(dataset_dir, n: int = 4) -> str:
    """A local stand-in for the Hub's RLHF-V with exactly its features, registered as rlhf_v_standin."""
    from datasets import Dataset

    folder = os.path.join(dataset_dir, "rlhf_v_standin")
    names = make_images(os.path.join(folder, "src"), n)
    rows = [
        {
            "conversations": [{"from": "human", "value": "<image>Describe the image in detail."}],
            "chosen": {"from": "gpt", "value": "A square on a white background."},
            "rejected": {"from": "gpt", "value": "A dog running on the beach."},
            "images": [{"bytes": open(os.path.join(folder, "src", name), "rb").read(), "path": name}],
        }
        for name in names
    ]
    Dataset.from_list(rows, features=rlhf_v_features()).to_parquet(os.path.join(folder, "rlhf-v.parquet"))
    info_path = os.path.join(dataset_dir, "dataset_info.json")
    info = json.load(open(info_path))
    info["rlhf_v_standin"] = {
        "file_name": "rlhf_v_standin/rlhf-v.parquet",
        "ranking": True,
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "images": "images"},
    }
    json.dump(info, open(info_path, "w"), indent=2)
    return "rlhf_v_standin"


@pytest.fixture
def parquet_build(build_config):
    build_config["output"].update(format="parquet", shard_size=4, name="seva_x")
    return build(build_config, progress=False)


def test_a_parquet_build_writes_shards_card_and_manifest(parquet_build):
    result = parquet_build
    assert result.kept == 10
    root = os.path.join(result.dataset_dir, "seva_x")
    assert sorted(os.listdir(os.path.join(root, "data"))) == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    manifest = json.load(open(result.manifest_file))
    assert manifest["files"]["data"]["format"] == "parquet" and manifest["files"]["data"]["records"] == 10
    meta = front_matter(os.path.join(root, "README.md"))
    assert meta["dataset_info"]["splits"][0]["num_examples"] == 10
    text = open(os.path.join(root, "README.md")).read()
    assert manifest["fingerprint"] in text and "diffusion_noise (step=800)" in text


@pytest.mark.slow
def test_llamafactory_trains_on_a_mix_with_an_embedded_image_set(parquet_build, tiny_llava, tmp_path):
    data = parquet_build.dataset_dir
    standin = make_rlhf_v_standin(data)
    common = dict(model_name_or_path=tiny_llava, template="llava", dataset_dir=data)

    out = tmp_path / "mix"
    trained = run_train(RECIPE, **common, dataset=f"seva_x,{standin}", output_dir=out)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (out / "adapter_model.safetensors").stat().st_size > 0
    log = [json.loads(line) for line in open(out / "trainer_log.jsonl")]
    assert log and "loss" in log[0]


@pytest.mark.slow
def test_the_standin_reproduces_the_path_based_mix_failure(build_config, tiny_llava, tmp_path):
    """The control: the same pairs as path-based JSONL cannot mix with the stand-in, as with the Hub's rlhf_v."""
    build_config["output"]["name"] = "seva_jsonl"
    result = build(build_config, progress=False)
    standin = make_rlhf_v_standin(result.dataset_dir)
    failed = run_train(
        RECIPE, model_name_or_path=tiny_llava, template="llava", dataset_dir=result.dataset_dir, dataset=f"seva_jsonl,{standin}", output_dir=tmp_path / "no"
    )
    assert failed.returncode != 0
    assert "The features can't be aligned because the key _images" in failed.stderr

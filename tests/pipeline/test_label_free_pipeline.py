"""STIC and RLAIF-V wherever the other strategies run: on 2 Ray workers byte for byte as in one process
(RLAIF-V, the strategy of many backend calls), resumed after kill -9 byte for byte (STIC, with its SFT
set), rejects with reasons, both writers, Parquet and TRL export of their nested scores."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

from helpers import make_images, read_jsonl
from seva_plugin.pipeline.build import build
from seva_plugin.pipeline.journal import COMMIT

RLAIFV = {"name": "rlaifv", "num_samples": 4, "max_new_tokens": 12, "feedback_max_new_tokens": 12, "claims": "sentences", "questions": "template"}


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> str:
    """12 prompts over 6 images, plus a missing image and a repeated id."""
    folder = tmp_path_factory.mktemp("label_free_prompts")
    names = make_images(folder / "images", 6)
    rows = [{"id": f"m{i:02d}", "image": f"images/{names[i % 6]}", "question": "Describe the image."} for i in range(12)]
    rows.insert(4, {"id": "gone", "image": "images/missing.png", "question": "Where is it?"})
    rows.insert(9, dict(rows[2]))
    (folder / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(folder / "prompts.jsonl")


def rlaifv_config(model: str, prompts: str, out, workers: int = 1) -> dict:
    return {
        "model": model,
        "template": "llava",
        "source": {"file": prompts},
        "strategy": RLAIFV,
        "backend": {"name": "hf", "batch_size": 2},
        "output": {"dataset_dir": str(out), "name": "lf"},
        "ray": {"num_workers": workers, "resources_per_worker": {"CPU": 1}},
    }


def outputs(dataset_dir, name: str = "lf") -> dict[str, bytes]:
    """The files a build writes, as bytes; the journal less its header (which names the output folder)."""
    paths = {"data": f"{name}.jsonl", "rejects": f"{name}.rejects.jsonl", "registry": "dataset_info.json", "journal": f".seva/{name}.journal.jsonl"}
    out = {k: open(os.path.join(dataset_dir, p), "rb").read() for k, p in paths.items()}
    out["journal"] = out["journal"].split(b"\n", 1)[1]
    return out


@pytest.fixture(scope="module")
def rlaifv_reference(feedback_llava, prompts, tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("rlaifv_reference")
    result = build(rlaifv_config(feedback_llava, prompts, out), progress=False)
    assert result.kept >= 2 and result.rejected == {"missing_file": 1, "duplicate_id": 1}
    return outputs(out)


@pytest.mark.slow
def test_rlaifv_on_two_ray_workers_writes_the_bytes_of_one_process(feedback_llava, prompts, rlaifv_reference, tmp_path):
    ray = pytest.importorskip("ray")
    temp = tempfile.mkdtemp(prefix="lfray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    try:
        result = build(rlaifv_config(feedback_llava, prompts, tmp_path, workers=2), progress=False)
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    assert outputs(tmp_path) == rlaifv_reference
    manifest = json.load(open(result.manifest_file))
    assert manifest["workers"]["ray"] is True and len({w["pid"] for w in manifest["workers"]["workers"]}) == 2
    rejects = [json.loads(line) for line in rlaifv_reference["rejects"].splitlines()]
    assert {r["id"] for r in rejects} == {"gone", "m02"} and all(r["reason"] for r in rejects)


# -- STIC: kill -9, then resume ------------------------------------------------------------------
def stic_config(model: str, listing: str, out) -> dict:
    return {
        "model": model,
        "template": "llava",
        "source": {"name": "images", "file": listing},
        "strategy": {"name": "stic", "max_new_tokens": 16},
        "backend": {"name": "hf", "batch_size": 2},
        "filters": ["empty"],
        "output": {"dataset_dir": str(out), "name": "resumable", "sft": True},
    }


def commits(journal) -> int:
    try:
        return open(journal, "rb").read().count(COMMIT)
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_stic_killed_mid_build_then_rerun_equals_an_uninterrupted_build(tiny_llava, tmp_path):
    names = make_images(tmp_path / "images", 12)
    turns = [{"from": "human", "value": "<image>\nWhat colour is the square?"}, {"from": "gpt", "value": "Red."}]
    rows = [{"id": f"s{i:02d}", "image": f"images/{names[i % 12]}", **({"conversations": turns} if i % 2 else {})} for i in range(24)]
    rows.insert(5, {"id": "nothing"})
    listing = tmp_path / "images.jsonl"
    listing.write_text("".join(json.dumps(r) + "\n" for r in rows))
    reference = build(stic_config(tiny_llava, str(listing), tmp_path / "ref"), progress=False)

    cfg = tmp_path / "build.yaml"
    cfg.write_text(yaml.safe_dump(stic_config(tiny_llava, str(listing), tmp_path / "out")))
    journal = tmp_path / "out" / ".seva" / "resumable.journal.jsonl"
    cmd = [sys.executable, "-m", "seva_plugin.commands.cli", "build", str(cfg), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while commits(journal) < 4 and time.time() < deadline and proc.poll() is None:  # header + 3 batches
        time.sleep(0.05)
    assert proc.poll() is None, "the build finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 3 <= commits(journal) - 1 < 12 and not (tmp_path / "out" / "resumable.jsonl").exists()

    rerun = subprocess.run(cmd, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    for name in ("resumable.jsonl", "resumable_sft.jsonl", "resumable.rejects.jsonl"):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name
    assert reference.kept == 24 and len(read_jsonl(tmp_path / "out" / "resumable_sft.jsonl")) == 12
    reject = json.loads((tmp_path / "out" / "resumable.rejects.jsonl").read_text())
    assert reject == {"id": "nothing", "reason": "'image' must be a non-empty path or list of paths, got []"}
    assert json.load(open(tmp_path / "out" / "resumable.manifest.json"))["resumed"] is True


# -- writers and export ----------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["stic", "rlaifv"])
def test_both_writers_and_export_keep_the_scores(strategy, tiny_llava, feedback_llava, prompts, tmp_path):
    """JSONL, then Parquet and TRL from the same journal (no generation), then `seva export`: the pairs and
    their nested scores (STIC's prompts and views, RLAIF-V's claims and probabilities) survive each."""
    from datasets import load_dataset

    from seva_plugin.commands.export import export

    if strategy == "stic":
        config = {**stic_config(tiny_llava, "", tmp_path / "data"), "source": {"name": "images", "dir": os.path.join(os.path.dirname(prompts), "images")}}
        config["output"] = {"dataset_dir": str(tmp_path / "data"), "name": "lf"}
    else:
        config = {**rlaifv_config(feedback_llava, prompts, tmp_path / "data"), "ray": None}
    jsonl = build(config, progress=False)
    want = {r["id"]: r for r in read_jsonl(jsonl.data_file)}
    assert want and all(r["scores"]["method"] == strategy for r in want.values())

    parquet = build({**config, "output": {**config["output"], "format": "parquet", "overwrite": True}}, progress=False)
    trl = build({**config, "output": {**config["output"], "writer": "trl", "dataset_dir": str(tmp_path / "trl")}}, progress=False)
    assert json.load(open(parquet.manifest_file))["resumed"] is True  # written from the journal, nothing generated
    for path, chosen in ((parquet.data_file, lambda r: r["chosen"]["value"]), (trl.data_file, lambda r: r["chosen"][0]["content"][0]["text"])):
        ds = load_dataset(os.path.dirname(path) if path.endswith("data") else path, split="train")
        assert sorted(ds["id"]) == sorted(want)
        for row in ds:
            assert json.loads(row["scores"]) == want[row["id"]]["scores"] and chosen(row) == want[row["id"]]["chosen"]["value"]

    exported = export(str(tmp_path / "data"), "lf", "trl", str(tmp_path / "exported"))
    assert exported.exported == len(want)
    rows = load_dataset(str(tmp_path / "exported" / "lf"), split="train")
    assert {r["id"]: json.loads(r["scores"]) for r in rows} == {k: v["scores"] for k, v in want.items()}

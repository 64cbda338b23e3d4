"""End to end: a LLaMA-Factory dataset in, `seva build`, then the real `llamafactory-cli train` (stage dpo, LoRA)."""

import json
import os
import subprocess
import sys

import pytest

from helpers import REPO, make_images, run_train

RECIPE = os.path.join(REPO, "recipes", "tiny_dpo_cpu.yaml")


@pytest.mark.slow
def test_seva_build_then_llamafactory_dpo_saves_an_adapter(tiny_llava, tmp_path):
    # The user's unlabeled data: a LLaMA-Factory sharegpt dataset with images (answers are ignored).
    src = tmp_path / "user_data"
    names = make_images(src / "pics", 6)
    rows = [
        {"messages": [{"from": "human", "value": "<image>What colour is the square?"}, {"from": "gpt", "value": "?"}], "images": [f"pics/{n}"]} for n in names
    ]
    (src / "unlabeled.json").write_text(json.dumps(rows))
    (src / "dataset_info.json").write_text(
        json.dumps({"unlabeled": {"file_name": "unlabeled.json", "formatting": "sharegpt", "columns": {"messages": "messages", "images": "images"}}})
    )
    config = tmp_path / "build.yaml"
    config.write_text(
        f"model: {tiny_llava}\ntemplate: llava\nsource: {{dataset: unlabeled, dataset_dir: {src}}}\n"
        "augment: {name: diffusion_noise, step: 800}\nbackend: {name: hf, batch_size: 3, max_new_tokens: 12}\n"
        "output: {dataset_dir: data, name: seva_e2e}\n"
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    built = subprocess.run(
        [sys.executable, "-m", "seva_plugin.commands.cli", "build", str(config), "--no-progress"], cwd=workdir, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr
    assert "seva_e2e" in json.load(open(workdir / "data" / "dataset_info.json"))

    # Train from another working directory, pointing LLaMA-Factory at the output folder.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "adapter"
    trained = run_train(
        RECIPE, cwd=elsewhere, model_name_or_path=tiny_llava, template="llava", dataset_dir=workdir / "data", dataset="seva_e2e", output_dir=out
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (out / "adapter_model.safetensors").stat().st_size > 0
    log = [json.loads(line) for line in open(out / "trainer_log.jsonl")]
    assert log and "loss" in log[0]

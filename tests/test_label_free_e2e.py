"""End to end for the label-free strategies: the shipped build templates (with a tiny twin and a local
source) build data that ``seva check-recipe`` passes and the real ``llamafactory-cli train`` trains on:
STIC's pairs (DPO) and its description-infused set (SFT); RLAIF-V's pairs through ``seva iterate``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import REPO, make_images, read_jsonl, run_train

TINY_DPO = os.path.join(REPO, "recipes", "tiny_dpo_cpu.yaml")


def seva(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seva_plugin.commands.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=900)


@pytest.mark.slow
def test_stic_template_builds_pairs_and_an_sft_set_that_llamafactory_trains_on(tmp_path):
    from seva_plugin.dev.tiny_models import build_tiny_llava_next

    model = build_tiny_llava_next(tmp_path / "llava_next", seed=0)
    names = make_images(tmp_path / "stage2" / "imgs", 4)
    turns = [{"from": "human", "value": "<image>\nWhat colour is it?"}, {"from": "gpt", "value": "Red."}]
    rows = [{"id": f"s{k}", "image": f"imgs/{n}", "conversations": turns} for k, n in enumerate(names)]
    (tmp_path / "stage2" / "mixed.json").write_text(json.dumps(rows))
    data = tmp_path / "data"
    # the stage-2 command of the template's header: its source switched to an instruction list, output.sft on
    built = seva(
        "build",
        os.path.join(REPO, "data_templates", "stic_llava_next.yaml"),
        f"model={model}",
        "source.dir=null",
        f"source.file={tmp_path / 'stage2' / 'mixed.json'}",
        "strategy.max_new_tokens=8",
        "backend.dtype=float32",
        "backend.batch_size=2",
        f"output.dataset_dir={data}",
        "output.sft=true",
        "--no-progress",
    )
    assert built.returncode == 0, built.stderr[-3000:]
    pairs, sft = read_jsonl(data / "stic_llava_next.jsonl"), read_jsonl(data / "stic_llava_next_sft.jsonl")
    assert pairs and len(sft) == len(pairs)
    assert all(r["conversations"][0]["value"].startswith("<image>\nImage description:\n") for r in sft)

    checked = seva("check-recipe", os.path.join(REPO, "recipes", "stic_llava_next.yaml"), f"model_name_or_path={model}", f"dataset_dir={data}")
    assert "FAILED" not in checked.stdout + checked.stderr, checked.stdout + checked.stderr

    for stage, dataset in (("dpo", "stic_llava_next"), ("sft", "stic_llava_next_sft")):
        out = tmp_path / f"adapter_{stage}"
        trained = run_train(TINY_DPO, stage=stage, model_name_or_path=model, template="llava_next_mistral", dataset_dir=data, dataset=dataset, output_dir=out)
        assert trained.returncode == 0, trained.stderr[-3000:]
        assert (out / "adapter_model.safetensors").stat().st_size > 0


@pytest.mark.slow
def test_rlaifv_template_runs_a_seva_iterate_round(feedback_llava, tmp_path):
    from seva_plugin.commands.iterate import iterate

    names = make_images(tmp_path / "imgs", 4)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{k}", "image": f"imgs/{n}", "question": "Describe the image."}) + "\n" for k, n in enumerate(names)))
    overrides = [
        f"model={feedback_llava}",
        f"source.file={prompts}",
        "strategy.num_samples=4",
        "strategy.max_new_tokens=16",
        "strategy.feedback_max_new_tokens=16",
        "strategy.claims=sentences",
        "strategy.questions=template",
        "backend.dtype=float32",
    ]
    template = os.path.join(REPO, "data_templates", "rlaifv_llava.yaml")
    state = iterate(template, TINY_DPO, rounds=1, work_dir=str(tmp_path / "run"), overrides=overrides, progress=False)
    (r0,) = state["rounds"]
    assert r0["steps_done"] == ["build", "train", "merge"] and r0["build"]["kept"] >= 1
    rows = read_jsonl(tmp_path / "run" / "data" / "rlaifv_llava_r0.jsonl")
    assert rows and all(r["scores"]["chosen"]["score"] > r["scores"]["rejected"]["score"] for r in rows)
    assert os.path.isfile(os.path.join(r0["output_model"], "config.json"))
    recipe = os.path.join(REPO, "recipes", "rlaifv_llava.yaml")
    checked = seva("check-recipe", recipe, f"model_name_or_path={feedback_llava}", f"dataset_dir={tmp_path / 'run' / 'data'}", "dataset=rlaifv_llava_r0")
    assert "FAILED" not in checked.stdout + checked.stderr, checked.stdout + checked.stderr

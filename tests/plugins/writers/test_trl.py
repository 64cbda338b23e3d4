"""Writer ``trl``: TRL's conversational preference format for vision, checked with TRL's own code and
one real ``DPOTrainer`` step on the tiny LLaVA twin."""

from __future__ import annotations

import importlib
import json
import os

import pytest
from writer_pairs import front_matter, make_pairs, manifest_for

from seva_plugin.plugins.writers.rows import pair_from_trl, trl_features, trl_row
from seva_plugin.plugins.writers.trl import TrlWriter


def write_trl(tmp_path, pairs, **keys) -> str:
    os.makedirs(tmp_path / "data", exist_ok=True)  # the host (a build, an export) makes the dataset_dir
    writer = TrlWriter(str(tmp_path / "data"), "seva_trl", **keys)
    writer.prepare(overwrite=False)
    written = writer.write(iter(pairs), overwrite=False)
    writer.finish(manifest_for(written.manifest_files(), written.records))
    return str(tmp_path / "data" / "seva_trl")


def test_rows_are_trl_vision_preference_examples(tmp_path):
    from datasets import load_dataset
    from trl.data_utils import is_conversational

    pairs = make_pairs(tmp_path / "images", 3)
    folder = write_trl(tmp_path, pairs)
    ds = load_dataset(folder, split="train")  # the card's configs: no arguments needed
    assert ds.features == trl_features() and len(ds) == 3
    example = ds[1]
    assert is_conversational(example)
    assert example["prompt"] == [{"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": "What colour is the square?"}]}]
    assert example["chosen"] == [{"role": "assistant", "content": [{"type": "text", "text": "red 1"}]}]
    assert example["rejected"] == [{"role": "assistant", "content": [{"type": "text", "text": "blue 1"}]}]
    [image] = example["images"]  # decoded as datasets Images
    assert image.size == (52, 40) and image.mode == "RGB"
    assert json.loads(example["provenance"]) == {"augment": "diffusion_noise", "seed": 1, "strategy": "seva"}
    assert not os.path.exists(tmp_path / "data" / "dataset_info.json")  # not a LLaMA-Factory dataset
    assert "trl" in front_matter(os.path.join(folder, "README.md"))["tags"]


def test_image_items_follow_the_markers_and_come_back(tmp_path):
    pair = make_pairs(tmp_path / "images", 2)[0]
    pair = {**pair, "prompt": "Compare <image> with\n<image>: which is red?", "images": pair["images"] * 2}
    row = trl_row(pair, pair["images"])
    assert [item["type"] for item in row["prompt"][0]["content"]] == ["text", "image", "text", "image", "text"]
    assert pair_from_trl(row) == pair


def _trl_trainer_importable() -> None:
    """Work around two traps of this environment (trl 0.24 with transformers 5.6), in the test only.

    trl computes its optional-package flags with transformers' ``_is_package_available``, which
    returns a (bool, version) tuple in transformers 5: every flag is truthy, and ``from trl import
    DPOTrainer`` tries to import mergekit. (LLaMA-Factory patches transformers before trl is imported;
    here trl may already be imported.) Users of the TRL format train with a current trl."""
    flags = importlib.import_module("trl.import_utils")
    for key, value in list(vars(flags).items()):
        if key.startswith("_") and key.endswith("_available") and isinstance(value, tuple):
            setattr(flags, key, bool(value[0]))


LLAVA_CHAT_TEMPLATE = (  # in the style of llava-hf's: list content, an <image> per image item
    "{% for message in messages %}{{ message['role'].upper() + ': ' }}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>{% else %}{{ item['text'] }}{% endif %}{% endfor %}"
    "{{ ' ' }}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def test_trl_dpo_trainer_takes_one_step_on_the_tiny_twin(tmp_path, tiny_llava):
    from datasets import load_dataset

    _trl_trainer_importable()
    from transformers import AutoProcessor, LlavaForConditionalGeneration
    from trl import DPOConfig, DPOTrainer

    folder = write_trl(tmp_path, make_pairs(tmp_path / "images", 4))
    dataset = load_dataset(folder, split="train")
    processor = AutoProcessor.from_pretrained(tiny_llava)
    processor.chat_template = LLAVA_CHAT_TEMPLATE  # the tiny twin ships none
    model = LlavaForConditionalGeneration.from_pretrained(tiny_llava)
    model.warnings_issued = {}  # trl 0.24's trainer writes to it; transformers 5 models no longer have it
    args = DPOConfig(
        output_dir=str(tmp_path / "out"),
        max_steps=1,
        per_device_train_batch_size=2,
        max_length=256,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        dataloader_num_workers=0,
    )
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor)
    assert "pixel_values" in trainer.train_dataset.column_names  # the images reached the model's inputs
    trainer.train()
    [step] = [log for log in trainer.state.log_history if "loss" in log]
    assert step["step"] == 1 and step["loss"] == pytest.approx(0.6931, abs=1e-3)  # log 2 at the reference policy
    assert step["logps/chosen"] != step["logps/rejected"]


def docs_trl_snippet() -> str:
    """The python block of docs/recipes.md's "TRL users" section, as the docs show it."""
    from helpers import REPO

    text = open(os.path.join(REPO, "docs", "recipes.md"), encoding="utf-8").read()
    section = text.split("## TRL users", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.slow
def test_the_docs_trl_snippet_trains_as_shown(tmp_path, tiny_llava):
    """Issue 24, point 3: the docs' TRL snippet failed here ("import LLaMA-Factory first" does not avoid
    the mergekit trap). It runs in a fresh Python exactly as docs/recipes.md shows it; only the two
    paths at its top point at a tiny twin (with its chat template saved, as the docs say) and a TRL
    export. DPOTrainer runs to the end on CPU."""
    import shutil
    import subprocess
    import sys

    from transformers import AutoProcessor

    snippet = docs_trl_snippet()
    model_line = 'model_id = "llava-hf/llava-1.5-7b-hf"\n'
    data_line = 'data = "data/seva_llava_t500"  # the folder `seva export ... --to trl` wrote\n'
    assert model_line in snippet and data_line in snippet
    twin = tmp_path / "twin"
    shutil.copytree(tiny_llava, twin)
    processor = AutoProcessor.from_pretrained(twin)
    processor.chat_template = LLAVA_CHAT_TEMPLATE  # the twin ships none; the docs' step for such a folder
    processor.save_pretrained(twin)
    folder = write_trl(tmp_path, make_pairs(tmp_path / "images", 4))
    code = snippet.replace(model_line, f"model_id = {str(twin)!r}\n").replace(data_line, f"data = {folder!r}\n")
    code += "\nimport json\nprint(json.dumps(trainer.state.log_history))\n"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    history = json.loads(run.stdout.strip().splitlines()[-1])
    assert history[-1]["step"] > 0 and "train_loss" in history[-1]  # trained to the end
    assert (tmp_path / "out").is_dir()

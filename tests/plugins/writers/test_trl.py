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
    files = writer.write(iter(pairs), overwrite=False)
    writer.finish(manifest_for(files, files["data"]["records"], tmp_path / "data", "seva_trl"))
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

"""Every shipped model-family recipe trains, through the real llamafactory-cli, on SeVa pairs that a
tiny offline twin of that family generated. Overrides touch only what cannot run here: the model
path, the data and output folders, bf16/GPU, worker counts, batch and LoRA sizes, image size."""

import json
import os

import pytest

from helpers import REPO, run_train
from seva_plugin.pipeline.build import build

RECIPES = os.path.join(REPO, "recipes")
# recipe, twin (tests/conftest.py TWINS), template, sizes
FAMILIES = [
    ("seva_llava.yaml", "llava", "llava", {}),
    ("seva_llava_13b.yaml", "llava", "llava", {}),
    ("seva_llava_next.yaml", "llava_next", "llava_next", {}),
    ("seva_qwen2_vl.yaml", "qwen2_vl", "qwen2_vl", {"image_max_pixels": 3136}),
]
CPU = {
    "bf16": "false",
    "use_cpu": "true",
    "preprocessing_num_workers": 1,
    "dataloader_num_workers": 0,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "lora_rank": 8,
    "lora_alpha": 16,
    "plot_loss": "false",
}


@pytest.mark.slow
@pytest.mark.parametrize("recipe, family, template, sizes", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_shipped_recipe_trains_on_pairs_from_its_family(recipe, family, template, sizes, twins, prompts, tmp_path):
    model = twins(family)
    backend = {"name": "hf", "batch_size": 5, "max_new_tokens": 12, **sizes}
    result = build(
        {
            "model": model,
            "template": template,
            "source": {"file": prompts},
            "backend": backend,
            "output": {"dataset_dir": str(tmp_path / "data"), "name": "pairs"},
        },
        progress=False,
    )
    assert result.kept >= 2, result.summary()
    out = tmp_path / "adapter"
    trained = run_train(os.path.join(RECIPES, recipe), model_name_or_path=model, dataset_dir=tmp_path / "data", dataset="pairs", output_dir=out, **CPU, **sizes)
    assert trained.returncode == 0, trained.stderr[-3000:]
    config = json.load(open(out / "adapter_config.json"))
    assert (out / "adapter_model.safetensors").stat().st_size > 0
    assert config["lora_dropout"] == 0.05  # the recipe's own value, not overridden
    assert not any("vision" in m or "projector" in m for m in config["target_modules"])


def test_qwen2_vl_generation_gets_the_mm_token_types_training_uses(twins):
    from PIL import Image

    from seva_plugin.interfaces import GenerationRequest
    from seva_plugin.pipeline.records import LoadedRecord, PromptRecord
    from seva_plugin.plugins.backends.hf import HfBackend

    backend = HfBackend(model=twins("qwen2_vl"), template="qwen2_vl", image_max_pixels=3136, max_new_tokens=4)
    records = [LoadedRecord(PromptRecord(str(i), "<image>Colour?", ["x.png"]), [Image.new("RGB", (56, 56 + 28 * i), (200, 0, 0))], i) for i in range(2)]
    ids, _, mm = backend.model_inputs([GenerationRequest(r) for r in records])
    inputs = backend.batch_inputs(ids, mm)
    model = backend.hf_model
    types = inputs["mm_token_type_ids"]
    assert types.shape == inputs["input_ids"].shape
    assert (types == 1).sum().item() == (inputs["input_ids"] == model.config.image_token_id).sum().item() > 0
    assert len(backend.generate([GenerationRequest(r) for r in records])) == 2

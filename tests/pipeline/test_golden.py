"""SeVa data is byte-identical to the golden builds made before the engine contract existed.

``tests/golden/*.jsonl`` were written by the code at commit ca1d393 with exactly the configs below;
any change to prompt rendering, image processing, seeding, noise or decoding shows up here.
"""

from __future__ import annotations

import json
import os

import pytest

from helpers import make_images
from seva_plugin.dev.tiny_models import build_tiny_llava, build_tiny_qwen2_vl
from seva_plugin.pipeline.build import build

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(__file__)), "golden")
QUESTIONS = ["What colour is the square?", "Describe the image.", "Where is the square?"]
CASES = {
    "llava_noise": ("llava", "llava", {"name": "diffusion_noise", "step": 800}, {}),
    "llava_moco": ("llava", "llava", {"name": "moco"}, {}),
    "qwen2_vl_noise": ("qwen", "qwen2_vl", {"name": "diffusion_noise", "step": 500}, {"image_max_pixels": 3136}),
}


@pytest.fixture(scope="module")
def golden_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("golden")
    # the twins as they were at ca1d393: plain generation config and Qwen2-VL pixel bounds of 28x28 and 112x112
    models = {
        "llava": build_tiny_llava(root / "models" / "llava", seed=0, real_files=False),
        "qwen": build_tiny_qwen2_vl(root / "models" / "qwen", seed=0, min_pixels=28 * 28, max_pixels=112 * 112, real_files=False),
    }
    data = root / "data"
    names = make_images(data / "images", 12)
    prompts = root / "prompts.jsonl"
    with open(prompts, "w") as fh:
        for i, name in enumerate(names):
            fh.write(json.dumps({"id": f"p{i}", "image": str(data / "images" / name), "question": QUESTIONS[i % 3]}) + "\n")
    return models, str(data), str(prompts)


@pytest.mark.parametrize("case", sorted(CASES))
def test_seva_build_is_byte_identical_to_the_golden_build(golden_inputs, case):
    models, data, prompts = golden_inputs
    model, template, augment, backend = CASES[case]
    config = {
        "model": models[model],
        "template": template,
        "source": {"file": prompts, "format": "jsonl"},
        "augment": augment,
        "backend": {"name": "hf", "batch_size": 5, "max_new_tokens": 12, **backend},
        "filters": [],
        "output": {"dataset_dir": data, "name": case},
        "seed": 3,
    }
    result = build(config, progress=False)
    with open(result.data_file, "rb") as fh, open(os.path.join(GOLDEN, f"{case}.jsonl"), "rb") as golden:
        assert fh.read() == golden.read()

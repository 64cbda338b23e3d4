"""Each twin carries what its real checkpoint ships: generation_config.json, chat template, config dtype
and processor settings. The expected values are the real files' (see seva_plugin/dev/tiny_models/shipped.py
for where each was read); token ids are the twin's ids of the same tokens."""

from __future__ import annotations

import json
import os

import pytest

# family -> (generation_config.json with token ids by text, config dtype)
GENERATION = {
    "llava": ({"bos_token_id": "<s>", "eos_token_id": "</s>", "pad_token_id": "<pad>"}, "float16"),
    "llava_next": ({"bos_token_id": "<s>", "eos_token_id": "</s>", "pad_token_id": "<unk>"}, "float16"),
    "qwen2_vl": (
        {"bos_token_id": "<|endoftext|>", "pad_token_id": "<|endoftext|>", "eos_token_id": ["<|im_end|>", "<|endoftext|>"], "do_sample": True,
         "repetition_penalty": 1.05, "temperature": 0.1, "top_k": 1, "top_p": 0.001},
        "bfloat16",
    ),
    "qwen2_5_vl": (
        {"bos_token_id": "<|endoftext|>", "pad_token_id": "<|endoftext|>", "eos_token_id": ["<|im_end|>", "<|endoftext|>"], "do_sample": True,
         "repetition_penalty": 1.05, "temperature": 0.1, "top_k": 1, "top_p": 0.001},
        "bfloat16",
    ),
    "qwen3_vl": (
        {"bos_token_id": "<|endoftext|>", "pad_token_id": "<|endoftext|>", "eos_token_id": ["<|im_end|>", "<|endoftext|>"], "do_sample": True,
         "repetition_penalty": 1.0, "temperature": 0.7, "top_k": 20, "top_p": 0.8},
        "bfloat16",
    ),
    "internvl3": ({"bos_token_id": "<|endoftext|>", "eos_token_id": "<|im_end|>"}, "bfloat16"),
    "gemma3": (
        {"bos_token_id": "<bos>", "eos_token_id": ["<eos>", "<end_of_turn>"], "pad_token_id": "<pad>", "cache_implementation": "hybrid",
         "do_sample": True, "top_k": 64, "top_p": 0.95},
        "bfloat16",
    ),
}  # fmt: skip

SAFETENSORS_DTYPE = {"float16": "F16", "bfloat16": "BF16"}

# family -> the real model's rendering of one user turn holding an image and "What colour?" (None: no template shipped)
CHAT = {
    "llava": "USER: <image>\nWhat colour? ASSISTANT:",
    "llava_next": None,
    "qwen2_vl": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What colour?"
    "<|im_end|>\n<|im_start|>assistant\n",
    "qwen2_5_vl": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What colour?"
    "<|im_end|>\n<|im_start|>assistant\n",
    "qwen3_vl": None,
    "internvl3": None,
    "gemma3": "<bos><start_of_turn>user\n<start_of_image>What colour?<end_of_turn>\n<start_of_turn>model\n",
}


def _shipped():
    from seva_plugin.dev.tiny_models import shipped

    return {
        "llava": shipped.LLAVA,
        "llava_next": shipped.LLAVA_NEXT,
        "qwen2_vl": shipped.QWEN2_VL,
        "qwen2_5_vl": shipped.QWEN2_5_VL,
        "qwen3_vl": shipped.QWEN3_VL,
        "internvl3": shipped.INTERNVL3,
        "gemma3": shipped.GEMMA3,
    }


SHIPPED = _shipped()


def _ids(value, tokenizer):
    if isinstance(value, list):
        return [_ids(v, tokenizer) for v in value]
    return tokenizer.convert_tokens_to_ids(value) if isinstance(value, str) and value.startswith("<") else value


@pytest.mark.parametrize("family", list(GENERATION))
def test_twin_ships_the_real_generation_config_dtype_and_chat_template(family, twins):
    from safetensors import safe_open
    from transformers import AutoProcessor, GenerationConfig

    folder = twins(family)
    processor = AutoProcessor.from_pretrained(folder)
    expected, dtype = GENERATION[family]
    with open(os.path.join(folder, "generation_config.json")) as fh:
        assert json.load(fh) == {k: _ids(v, processor.tokenizer) for k, v in expected.items()}
    loaded = GenerationConfig.from_pretrained(folder)  # what generate() merges into every call
    assert (loaded.repetition_penalty, loaded.top_k) == (expected.get("repetition_penalty"), expected.get("top_k"))
    assert SHIPPED[family].dtype == dtype
    with open(os.path.join(folder, "config.json")) as fh:
        assert json.load(fh)["dtype"] == dtype
    with safe_open(os.path.join(folder, "model.safetensors"), "pt") as weights:
        assert {str(weights.get_slice(name).get_dtype()) for name in weights.keys()} == {SAFETENSORS_DTYPE[dtype]}
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour?"}]}]
    if CHAT[family] is None:
        assert not processor.chat_template
    else:
        assert processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == CHAT[family]


def test_processor_settings_are_the_real_models(twins):
    """Pixel bounds, pinpoint shapes and pan-and-scan as in the real preprocessor files; only sizes tied to the
    tiny vision towers (LLaVA's 336-px crop, Gemma's 896 px) are the twins' own."""
    from transformers import AutoProcessor

    def image_processor(family):
        return AutoProcessor.from_pretrained(twins(family)).image_processor

    for family in ("qwen2_vl", "qwen2_5_vl"):
        assert dict(image_processor(family).size) == {"shortest_edge": 3136, "longest_edge": 12845056}
    qwen3 = AutoProcessor.from_pretrained(twins("qwen3_vl"))
    assert dict(qwen3.image_processor.size) == {"shortest_edge": 65536, "longest_edge": 16777216}
    assert dict(qwen3.video_processor.size) == {"shortest_edge": 4096, "longest_edge": 25165824}
    llava = image_processor("llava")
    assert (llava.resample, llava.do_center_crop, list(llava.image_mean)) == (3, True, [0.48145466, 0.4578275, 0.40821073])
    tile = image_processor("llava_next").crop_size["height"]
    shapes = sorted((h // tile, w // tile) for h, w in image_processor("llava_next").image_grid_pinpoints)
    assert shapes == sorted([(1, 2), (2, 1), (2, 2), (3, 1), (1, 3)])  # llava-v1.6-vicuna-7b-hf's, in its 336-px tiles
    gemma = image_processor("gemma3")
    assert (gemma.resample, gemma.do_pan_and_scan, list(gemma.image_mean)) == (2, None, [0.5, 0.5, 0.5])


def test_plain_files_are_kept_for_the_golden_builds(tmp_path):
    """``real_files=False``: the files the golden builds were made with (ids only, greedy, float32, no chat template)."""
    from seva_plugin.dev.tiny_models import build_tiny_qwen2_vl

    folder = build_tiny_qwen2_vl(tmp_path / "plain", real_files=False)
    with open(os.path.join(folder, "generation_config.json")) as fh:
        generation = json.load(fh)
    assert "repetition_penalty" not in generation and not generation.get("do_sample", False)
    with open(os.path.join(folder, "config.json")) as fh:
        assert json.load(fh)["dtype"] == "float32"
    assert not os.path.exists(os.path.join(folder, "chat_template.jinja"))

"""What the real checkpoints ship besides their weights: ``generation_config.json``, the chat
template and the dtype of ``config.json`` and of the saved weights. Each twin writes its family's
values here, so code that runs on the twins meets what it meets on the real models (a repetition
penalty in the generation config, a chat template, bfloat16 weights).

Every value names the file it was read from. Where the official repository's file could not be
read here, the value comes from a copy that says it was duplicated from it, and the comment says
so; where no copy was found either, the twin ships nothing for it and the comment says that.
Token ids are given by name: the twins' vocabularies are tiny, so the ids differ from the real ones.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from .chat_templates import GEMMA3_CHAT_TEMPLATE, LLAVA_CHAT_TEMPLATE, QWEN2_5_VL_CHAT_TEMPLATE, QWEN2_VL_CHAT_TEMPLATE


@dataclass(frozen=True)
class Shipped:
    """One checkpoint's files: ``generation`` maps generation_config.json keys to values, where a
    token id is given as the token's text (or a list of them); ``dtype`` is the real config.json's
    dtype, in which the twin's weights are saved too."""

    checkpoint: str
    generation: dict = field(default_factory=dict)
    dtype: str = "float32"
    chat_template: str | None = None


LLAVA = Shipped(
    "llava-hf/llava-1.5-7b-hf",
    # generation_config.json: {"_from_model_config": true, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 32001},
    # read from the copy huggingface.co/mohitsha/llava-1.5-7b-hf (HF staff upload of llava-hf/llava-1.5-7b-hf);
    # ids 1, 2 and 32001 are <s>, </s> and <pad> (llava-hf/llava-1.5-7b-hf added_tokens.json: {"<image>": 32000, "<pad>": 32001}).
    {"bos_token_id": "<s>", "eos_token_id": "</s>", "pad_token_id": "<pad>"},
    # config.json "torch_dtype": "float16" (llava-hf/llava-1.5-7b-hf config.json, as copied by edbeeching/vsft-llava-1.5-7b-hf).
    "float16",
    LLAVA_CHAT_TEMPLATE,
)

LLAVA_NEXT = Shipped(
    "llava-hf/llava-v1.6-vicuna-7b-hf",
    # huggingface.co/llava-hf/llava-v1.6-vicuna-7b-hf/blob/main/generation_config.json:
    # {"_from_model_config": true, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}; id 0 is Vicuna's <unk>.
    {"bos_token_id": "<s>", "eos_token_id": "</s>", "pad_token_id": "<unk>"},
    # llava-hf/llava-v1.6-vicuna-7b-hf config.json: "torch_dtype": "float16".
    "float16",
    # No chat template: its chat_template.json could not be read here (nor a copy that names it).
    None,
)

# Qwen2-VL-7B-Instruct's generation_config.json could not be read here. hf-internal-testing's twin of
# Qwen2VLForConditionalGeneration (huggingface.co/hf-internal-testing/tiny-random-Qwen2VLForConditionalGeneration,
# generation_config.json) ships these values, as do models saved from Qwen2-VL (unsloth/Qwen2-VL-2B).
QWEN_GREEDY_SAMPLER = {
    "bos_token_id": "<|endoftext|>",
    "pad_token_id": "<|endoftext|>",
    "do_sample": True,
    "eos_token_id": ["<|im_end|>", "<|endoftext|>"],
    "repetition_penalty": 1.05,
    "temperature": 0.1,
    "top_k": 1,
    "top_p": 0.001,
}

QWEN2_VL = Shipped(
    "Qwen/Qwen2-VL-7B-Instruct",
    QWEN_GREEDY_SAMPLER,
    # config.json "torch_dtype": "bfloat16" (Qwen/Qwen2-VL-7B-Instruct, as copied by Efficient-Large-Model/Qwen2-VL-7B-Instruct).
    "bfloat16",
    QWEN2_VL_CHAT_TEMPLATE,
)

QWEN2_5_VL = Shipped(
    "Qwen/Qwen2.5-VL-7B-Instruct",
    # Qwen2.5-VL-7B-Instruct's own file could not be read here; models saved from it carry these values
    # (huggingface.co/nbeerbower/Dumpling-Qwen2.5-VL-7B, jh-parking/TiS, OwlCap/OwlCap-7B generation_config.json),
    # and QwenLM/Qwen3-VL issue #722 names its top_k 1. Qwen2.5 Instruct models ship repetition_penalty 1.05.
    QWEN_GREEDY_SAMPLER,
    # config "dtype": "bfloat16" (trl-internal-testing/tiny-Qwen2_5_VLForConditionalGeneration, made from Qwen2.5-VL-3B-Instruct).
    "bfloat16",
    QWEN2_5_VL_CHAT_TEMPLATE,
)

QWEN3_VL = Shipped(
    "Qwen/Qwen3-VL-4B-Instruct",
    # generation_config.json of Qwen3-VL-4B-Instruct-FP8 as uploaded by TechCarbasa/MyModels (commit b1b082bb):
    # top_k 20, top_p 0.8, repetition_penalty 1.0, temperature 0.7, the values QwenLM/Qwen3-VL issue #1825 gives
    # for the Instruct models. The official file itself could not be read here.
    {
        "bos_token_id": "<|endoftext|>",
        "pad_token_id": "<|endoftext|>",
        "do_sample": True,
        "eos_token_id": ["<|im_end|>", "<|endoftext|>"],
        "top_k": 20,
        "top_p": 0.8,
        "repetition_penalty": 1.0,
        "temperature": 0.7,
    },
    # bfloat16, as every Qwen3-VL copy read here (the official config.json could not be read).
    "bfloat16",
    # No chat template: the Instruct model's could not be read here (copies found were the Thinking model's).
    None,
)

INTERNVL3 = Shipped(
    "OpenGVLab/InternVL3-1B-hf",
    # huggingface.co/OpenGVLab/InternVL3-1B-hf (refs/pr/2) generation_config.json:
    # {"_from_model_config": true, "bos_token_id": 151643, "eos_token_id": 151645} (InternVL3-78B-hf ships the same).
    {"bos_token_id": "<|endoftext|>", "eos_token_id": "<|im_end|>"},
    # bfloat16 is what the -hf conversions ship to the best of the copies read; the official config.json could not be read.
    "bfloat16",
    # No chat template: the -hf repository's could not be read here.
    None,
)

GEMMA3 = Shipped(
    "google/gemma-3-4b-it",
    # google/gemma-3-4b-it generation_config.json as carried by trl-internal-testing/tiny-Gemma3ForConditionalGeneration
    # before its commit e7466cd (HF staff): ids 2, [1, 106] and 0 are <bos>, [<eos>, <end_of_turn>] and <pad>.
    {
        "bos_token_id": "<bos>",
        "cache_implementation": "hybrid",
        "do_sample": True,
        "eos_token_id": ["<eos>", "<end_of_turn>"],
        "pad_token_id": "<pad>",
        "top_k": 64,
        "top_p": 0.95,
    },
    "bfloat16",  # Gemma 3 checkpoints are published in bfloat16 (the official config.json could not be read here)
    GEMMA3_CHAT_TEMPLATE,
)


def token_ids(value, tokenizer):
    """A generation_config value with token texts replaced by the twin's ids."""
    if isinstance(value, list):
        return [token_ids(v, tokenizer) for v in value]
    if isinstance(value, str) and value.startswith("<"):
        found = tokenizer.convert_tokens_to_ids(value)
        if found is None or found == tokenizer.unk_token_id and value != tokenizer.unk_token:
            raise ValueError(f"the twin's tokenizer has no token {value!r}")
        return found
    return value


def write_shipped(out_dir: str, shipped: Shipped, tokenizer) -> None:
    """Write ``generation_config.json`` as ``shipped`` says (the weights and config.json's dtype are
    written by ``save_pretrained`` of a model cast to ``shipped.dtype``: ``common.save``)."""
    generation = {key: token_ids(value, tokenizer) for key, value in shipped.generation.items()}
    with open(os.path.join(out_dir, "generation_config.json"), "w", encoding="utf-8") as fh:
        json.dump(generation, fh, indent=2, sort_keys=True)
        fh.write("\n")

"""Tiny random-weight vision-language models, built offline for tests and demos.

There is no model hub here, so every model is built from a config, given a BPE
tokenizer trained on a small built-in English corpus, and saved with
``save_pretrained``. The saved directories load through LLaMA-Factory
(``load_tokenizer`` / ``load_model`` / ``llamafactory-cli train``) exactly like
the real checkpoints they imitate:

=====================  ==================================  =====================
builder                imitates                            LLaMA-Factory template
=====================  ==================================  =====================
``build_tiny_llava``       llava-hf/llava-1.5-7b-hf        ``llava``
``build_tiny_llava_next``  llava-hf/llava-v1.6-vicuna-7b-hf ``llava_next``
``build_tiny_qwen2_vl``    Qwen/Qwen2-VL-7B-Instruct       ``qwen2_vl``
``build_tiny_qwen2_5_vl``  Qwen/Qwen2.5-VL-7B-Instruct     ``qwen2_vl``
``build_tiny_qwen3_vl``    Qwen/Qwen3-VL-4B-Instruct       ``qwen3_vl_nothink`` / ``qwen3_vl``
``build_tiny_internvl3``   OpenGVLab/InternVL3-1B-hf       ``intern_vl``
``build_tiny_gemma3``      google/gemma-3-4b-it            ``gemma3``
``build_tiny_clip``        openai/clip-vit-large-patch14   (CSR visual score)
=====================  ==================================  =====================

Weights are random (seeded), so generations are gibberish until a caller trains
the model; the point is that shapes, special tokens and processors match. Only the
sizes are tiny: each twin ships its checkpoint's generation_config.json, chat template,
processor settings and dtype (float16 or bfloat16 weights; ``shipped.py`` names where each value
was read; ``real_files=False`` gives the plain files, float32, instead).
Heavy libraries (torch, transformers, tokenizers) are imported inside functions
so importing this module stays cheap.
"""

from .clip import build_tiny_clip
from .common import BASE_WORDS
from .gemma import build_tiny_gemma3
from .internvl import build_tiny_internvl3
from .llava import build_tiny_llava, build_tiny_llava_next
from .qwen import build_tiny_qwen2_5_vl, build_tiny_qwen2_vl, build_tiny_qwen3_vl

__all__ = [
    "BASE_WORDS",
    "build_tiny_clip",
    "build_tiny_gemma3",
    "build_tiny_internvl3",
    "build_tiny_llava",
    "build_tiny_llava_next",
    "build_tiny_qwen2_5_vl",
    "build_tiny_qwen2_vl",
    "build_tiny_qwen3_vl",
]

"""An InternVL3 twin (the transformers-native ``-hf`` layout)."""

from __future__ import annotations

import os
from collections.abc import Iterable

from .common import TWIN_HEADS, TWIN_HIDDEN, save, seeded_init, set_special_ids, token_ids
from .qwen import QWEN_SPECIALS, qwen_style_tokenizer, qwen_text_config
from .shipped import INTERNVL3

_INTERNVL_SPECIALS = [*QWEN_SPECIALS, "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]


def build_tiny_internvl3(
    out_dir: str | os.PathLike,
    seed: int = 0,
    vocab: Iterable[str] | None = None,
    *,
    image_size: int = 56,
    patch_size: int = 14,
    real_files: bool = True,
) -> str:
    """Build a tiny InternVL3 twin (transformers' own ``InternVLForConditionalGeneration``,
    template ``intern_vl``) in ``out_dir``.

    Like OpenGVLab/InternVL3-1B-hf: a Qwen2 text tower, an InternViT vision tower and a
    pixel-shuffle (0.5) projector. Each ``image_size`` tile becomes
    ``(image_size // patch_size) ** 2 / 4`` ``<IMG_CONTEXT>`` tokens (4 at the defaults) between
    ``<img>`` and ``</img>``. One tile an image unless LLaMA-Factory's ``crop_to_patches`` is on:
    then a grid of up to 12 tiles plus a thumbnail. ``vocab`` and ``real_files`` as in :func:`build_tiny_llava`
    (InternVL3-1B-hf's preprocessor_config.json could not be read here: the tile settings are transformers'
    InternVL conversion's, with ImageNet normalisation as in InternVL2-8B's file).
    Returns ``out_dir`` as ``str``.
    """
    from transformers import GotOcr2ImageProcessor, InternVLConfig, InternVLForConditionalGeneration, InternVLProcessor, InternVLVideoProcessor

    if image_size % (2 * patch_size):
        raise ValueError("image_size must be a multiple of 2 * patch_size (pixel shuffle halves the grid)")
    extra = list(vocab or [])
    tokenizer = qwen_style_tokenizer(
        _INTERNVL_SPECIALS,
        extra,
        {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"},
    )
    ids = token_ids(tokenizer, _INTERNVL_SPECIALS)
    hidden, heads = TWIN_HIDDEN, TWIN_HEADS
    tokens_per_tile = (image_size // patch_size) ** 2 // 4
    config = InternVLConfig(
        vision_config=dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=[image_size, image_size],
            patch_size=[patch_size, patch_size],
            use_qk_norm=False,
            norm_type="layer_norm",
            use_mean_pooling=False,
        ),
        text_config=qwen_text_config(tokenizer, ids, hidden, heads, model_type="qwen2", tie_word_embeddings=False),
        image_token_id=ids["<IMG_CONTEXT>"],
        image_seq_length=tokens_per_tile,
        downsample_ratio=0.5,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )
    model = seeded_init(InternVLForConditionalGeneration, config, seed)
    set_special_ids(model, bos=None, eos=[ids["<|im_end|>"], ids["<|endoftext|>"]], pad=ids["<|endoftext|>"])
    imagenet = dict(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])  # InternVL's normalisation
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(
            size={"height": image_size, "width": image_size}, crop_to_patches=False, min_patches=1, max_patches=12, **imagenet
        ),
        video_processor=InternVLVideoProcessor(size={"height": image_size, "width": image_size}, **imagenet),
        tokenizer=tokenizer,
        image_seq_length=tokens_per_tile,
    )
    return save(out_dir, model, processor, INTERNVL3 if real_files else None)

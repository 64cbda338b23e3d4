"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL twins: byte-level BPE with Qwen's chat tokens."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from .common import TWIN_HEADS, TWIN_HIDDEN, check_single_tokens, embedding_rows, save, seeded_init, set_special_ids, token_ids, train_byte_level_bpe

# Qwen2's special tokens; the template ``qwen2_vl`` and the processor look these
# up by text, and the model config needs their ids.
QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
QWEN_MEDIA_TOKENS = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"}


def qwen_text_config(tokenizer, ids: dict[str, int], hidden: int, heads: int, **more) -> dict:
    """A 2-layer Qwen text tower: no BOS (``<|endoftext|>`` stands in and pads), ``<|im_end|>`` ends a turn."""
    return dict(
        vocab_size=embedding_rows(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        **more,
    )


def qwen_media_ids(ids: dict[str, int]) -> dict[str, Any]:
    """The model config's image, video and vision-span token ids."""
    return dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )


def build_tiny_qwen2_vl(
    out_dir: str | os.PathLike,
    seed: int = 0,
    vocab: Iterable[str] | None = None,
    *,
    max_pixels: int = 112 * 112,
    head_dim: int = 16,
) -> str:
    """Build a tiny Qwen2-VL twin (template ``qwen2_vl``) in ``out_dir``.

    Images are cut into 14-px patches and 2x2 patches are merged into one
    ``<|image_pad|>`` token, so an image of ``h x w`` pixels costs about
    ``h * w / 784`` tokens. The saved image processor caps images at
    ``max_pixels`` (16 tokens at the default); callers should still pass a small
    ``image_max_pixels`` to LLaMA-Factory, which resizes before the processor
    (3136 = 56x56 px gives 4 tokens). ``vocab`` and ``head_dim`` as in :func:`build_tiny_llava`.
    Returns ``out_dir`` as ``str``.
    """
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
    )
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor  # transformers 5.6's type-checking imports leave it out

    tokenizer = qwen_style_tokenizer(QWEN_SPECIALS, list(vocab or []), QWEN_MEDIA_TOKENS)
    ids = token_ids(tokenizer, QWEN_SPECIALS)

    heads = 4
    hidden = heads * head_dim
    config = Qwen2VLConfig(
        # multimodal RoPE: (temporal, height, width) sections sum to head_dim / 2
        text_config=qwen_text_config(
            tokenizer, ids, hidden, heads, rope_scaling={"type": "mrope", "mrope_section": [head_dim // 8, 3 * head_dim // 16, 3 * head_dim // 16]}
        ),
        vision_config=dict(
            depth=2,
            embed_dim=32,
            hidden_size=hidden,  # the merger projects straight into the LLM width
            num_heads=2,
            mlp_ratio=2,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
        ),
        **qwen_media_ids(ids),
        tie_word_embeddings=False,
    )
    assert sum(config.get_text_config().rope_parameters["mrope_section"]) == head_dim // 2
    model = seeded_init(Qwen2VLForConditionalGeneration, config, seed)
    # Like Qwen2-VL-Instruct: no BOS, and generation stops at either end token.
    set_special_ids(model, bos=None, eos=[ids["<|im_end|>"], ids["<|endoftext|>"]], pad=ids["<|endoftext|>"])

    # Pass ``size`` explicitly: the processors' constructors otherwise mutate a
    # class-level default dict when given min/max pixels.
    size = {"shortest_edge": 28 * 28, "longest_edge": max_pixels}
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=dict(size)),
        video_processor=Qwen2VLVideoProcessor(size=dict(size)),
        tokenizer=tokenizer,
    )
    return save(out_dir, model, processor)


def qwen_style_tokenizer(specials: list[str], extra: list[str], extra_special_tokens: dict, added: Iterable[str] = ()):
    """Byte-level BPE with Qwen's conventions: no BOS, ``<|im_end|>`` ends a turn, ``<|endoftext|>`` pads.
    ``added``: tokens added as ordinary (non-special) tokens, as Qwen3 adds ``<think>``."""
    from transformers import PreTrainedTokenizerFast

    raw = train_byte_level_bpe(specials, extra)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        extra_special_tokens=extra_special_tokens,
    )
    if added:
        tokenizer.add_tokens(list(added), special_tokens=False)
    check_single_tokens(tokenizer, extra)
    return tokenizer


def build_tiny_qwen2_5_vl(
    out_dir: str | os.PathLike,
    seed: int = 0,
    vocab: Iterable[str] | None = None,
    *,
    max_pixels: int = 112 * 112,
) -> str:
    """Build a tiny Qwen2.5-VL twin (template ``qwen2_vl``) in ``out_dir``.

    As Qwen2-VL: 14-px patches, 2x2 merged into one ``<|image_pad|>`` token (about
    ``h * w / 784`` tokens an image), ``max_pixels`` caps the saved image processor; the
    vision tower has Qwen2.5-VL's window attention (a 112-px window, the last block full)
    and RMSNorm/SwiGLU blocks. Text: 2 layers, head_dim 32, M-RoPE sections [4, 6, 6].
    ``vocab`` as in :func:`build_tiny_llava`. Returns ``out_dir`` as ``str``.
    """
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
    )
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    extra = list(vocab or [])
    tokenizer = qwen_style_tokenizer(QWEN_SPECIALS, extra, QWEN_MEDIA_TOKENS)
    ids = token_ids(tokenizer, QWEN_SPECIALS)
    hidden, heads = TWIN_HIDDEN, TWIN_HEADS
    config = Qwen2_5_VLConfig(
        text_config=qwen_text_config(
            tokenizer, ids, hidden, heads, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [4, 6, 6]}
        ),
        vision_config=dict(
            depth=2,
            hidden_size=64,
            intermediate_size=128,
            num_heads=2,
            out_hidden_size=hidden,  # the merger projects into the LLM width
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=[1],
        ),
        **qwen_media_ids(ids),
        tie_word_embeddings=False,
    )
    assert sum(config.get_text_config().rope_parameters["mrope_section"]) == hidden // heads // 2
    model = seeded_init(Qwen2_5_VLForConditionalGeneration, config, seed)
    set_special_ids(model, bos=None, eos=[ids["<|im_end|>"], ids["<|endoftext|>"]], pad=ids["<|endoftext|>"])
    size = {"shortest_edge": 28 * 28, "longest_edge": max_pixels}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=dict(size)),
        video_processor=Qwen2VLVideoProcessor(size=dict(size)),
        tokenizer=tokenizer,
    )
    return save(out_dir, model, processor)


def build_tiny_qwen3_vl(
    out_dir: str | os.PathLike,
    seed: int = 0,
    vocab: Iterable[str] | None = None,
    *,
    max_pixels: int = 128 * 128,
) -> str:
    """Build a tiny Qwen3-VL twin (templates ``qwen3_vl`` and ``qwen3_vl_nothink``) in ``out_dir``.

    Qwen3-VL's layout: 16-px patches, 2x2 merged into one ``<|image_pad|>`` token (about
    ``h * w / 1024`` tokens an image), learned position embeddings interpolated to the grid,
    DeepStack features of vision block 0 added to the first text layer, interleaved M-RoPE
    (sections [6, 5, 5] of head_dim 32), and ``<think>``/``</think>`` as ordinary added tokens
    as in Qwen3's tokenizer. ``vocab`` as in :func:`build_tiny_llava`. Returns ``out_dir`` as ``str``.
    """
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    extra = list(vocab or [])
    tokenizer = qwen_style_tokenizer(QWEN_SPECIALS, extra, QWEN_MEDIA_TOKENS, added=("<think>", "</think>"))
    ids = token_ids(tokenizer, QWEN_SPECIALS)
    hidden, heads = TWIN_HIDDEN, TWIN_HEADS
    config = Qwen3VLConfig(
        text_config=qwen_text_config(
            tokenizer,
            ids,
            hidden,
            heads,
            head_dim=hidden // heads,
            rope_parameters={"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [6, 5, 5], "mrope_interleaved": True},
        ),
        vision_config=dict(
            depth=2,
            hidden_size=64,
            intermediate_size=128,
            num_heads=2,
            out_hidden_size=hidden,
            patch_size=16,
            spatial_merge_size=2,
            temporal_patch_size=2,
            num_position_embeddings=64,  # an 8x8 learned grid, interpolated to each image's
            deepstack_visual_indexes=[0],
        ),
        **qwen_media_ids(ids),
        tie_word_embeddings=False,
    )
    model = seeded_init(Qwen3VLForConditionalGeneration, config, seed)
    set_special_ids(model, bos=None, eos=[ids["<|im_end|>"], ids["<|endoftext|>"]], pad=ids["<|endoftext|>"])
    size = {"shortest_edge": 32 * 32, "longest_edge": max_pixels}
    half = dict(image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])  # Qwen3-VL's normalisation
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=dict(size), patch_size=16, merge_size=2, temporal_patch_size=2, **half),
        video_processor=Qwen3VLVideoProcessor(size=dict(size), patch_size=16, merge_size=2, temporal_patch_size=2, **half),
        tokenizer=tokenizer,
    )
    return save(out_dir, model, processor)

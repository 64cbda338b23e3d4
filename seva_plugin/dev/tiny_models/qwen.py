"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL twins: byte-level BPE with Qwen's chat tokens."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from .common import TWIN_HEADS, TWIN_HIDDEN, check_single_tokens, embedding_rows, save, seeded_init, set_special_ids, token_ids, train_byte_level_bpe
from .shipped import QWEN2_5_VL, QWEN2_VL, QWEN3_VL

# preprocessor_config.json of Qwen/Qwen2-VL-7B-Instruct and Qwen/Qwen2.5-VL-7B-Instruct: "min_pixels": 3136,
# "max_pixels": 12845056 (as copied by morthens/qwen2-vl-7b-infer, "Duplicate from Qwen/Qwen2-VL-7B-Instruct", and by
# Qwen/Qwen2-VL-2B's own file; Qwen2.5-VL copies such as AngelSlim/Qwen2.5-VL-72B-Instruct-FP8-Dynamic carry the same).
QWEN2_MIN_PIXELS, QWEN2_MAX_PIXELS = 3136, 12845056
# Qwen/Qwen3-VL-4B-Instruct preprocessor_config.json "size": {"shortest_edge": 65536, "longest_edge": 16777216} and
# video_preprocessor_config.json {"shortest_edge": 4096, "longest_edge": 25165824} (as uploaded by TechCarbasa/MyModels
# and florianvoss/Qwen3-VL-4B-Instruct-compiled, "compiled artifacts from Qwen3-VL-4B-Instruct").
QWEN3_IMAGE_PIXELS, QWEN3_VIDEO_PIXELS = (65536, 16777216), (4096, 25165824)

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
    min_pixels: int = QWEN2_MIN_PIXELS,
    max_pixels: int = QWEN2_MAX_PIXELS,
    head_dim: int = 16,
    real_files: bool = True,
) -> str:
    """Build a tiny Qwen2-VL twin (template ``qwen2_vl``) in ``out_dir``.

    Images are cut into 14-px patches and 2x2 patches are merged into one
    ``<|image_pad|>`` token, so an image of ``h x w`` pixels costs about
    ``h * w / 784`` tokens. The saved image processor keeps images between
    ``min_pixels`` and ``max_pixels`` (Qwen2-VL-7B-Instruct's: at least 4 tokens); callers
    should pass a small ``image_max_pixels`` to LLaMA-Factory, which resizes before the processor
    (3136 = 56x56 px gives 4 tokens). ``vocab``, ``head_dim`` and ``real_files`` (the real
    model's generation config and chat template) as in :func:`build_tiny_llava`.
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
    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=dict(size)),
        video_processor=Qwen2VLVideoProcessor(size=dict(size)),
        tokenizer=tokenizer,
    )
    return save(out_dir, model, processor, QWEN2_VL if real_files else None)


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
    min_pixels: int = QWEN2_MIN_PIXELS,
    max_pixels: int = QWEN2_MAX_PIXELS,
    real_files: bool = True,
) -> str:
    """Build a tiny Qwen2.5-VL twin (template ``qwen2_vl``) in ``out_dir``.

    As Qwen2-VL: 14-px patches, 2x2 merged into one ``<|image_pad|>`` token (about
    ``h * w / 784`` tokens an image), ``min_pixels``/``max_pixels`` bound the saved image processor; the
    vision tower has Qwen2.5-VL's window attention (a 112-px window, the last block full)
    and RMSNorm/SwiGLU blocks. Text: 2 layers, head_dim 32, M-RoPE sections [4, 6, 6].
    ``vocab`` and ``real_files`` as in :func:`build_tiny_llava`. Returns ``out_dir`` as ``str``.
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
    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=dict(size)),
        video_processor=Qwen2VLVideoProcessor(size=dict(size)),
        tokenizer=tokenizer,
    )
    return save(out_dir, model, processor, QWEN2_5_VL if real_files else None)


def build_tiny_qwen3_vl(
    out_dir: str | os.PathLike,
    seed: int = 0,
    vocab: Iterable[str] | None = None,
    *,
    real_files: bool = True,
) -> str:
    """Build a tiny Qwen3-VL twin (templates ``qwen3_vl`` and ``qwen3_vl_nothink``) in ``out_dir``.

    Qwen3-VL's layout: 16-px patches, 2x2 merged into one ``<|image_pad|>`` token (about
    ``h * w / 1024`` tokens an image), learned position embeddings interpolated to the grid,
    DeepStack features of vision block 0 added to the first text layer, interleaved M-RoPE
    (sections [6, 5, 5] of head_dim 32), and ``<think>``/``</think>`` as ordinary added tokens
    as in Qwen3's tokenizer. The processor keeps Qwen3-VL-4B-Instruct's pixel bounds, so an image costs at least
    64 tokens. ``vocab`` and ``real_files`` as in :func:`build_tiny_llava`. Returns ``out_dir`` as ``str``.
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
    image_size = dict(zip(("shortest_edge", "longest_edge"), QWEN3_IMAGE_PIXELS, strict=True))
    video_size = dict(zip(("shortest_edge", "longest_edge"), QWEN3_VIDEO_PIXELS, strict=True))
    half = dict(image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])  # Qwen3-VL's normalisation (same files)
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=image_size, patch_size=16, merge_size=2, temporal_patch_size=2, **half),
        video_processor=Qwen3VLVideoProcessor(size=video_size, patch_size=16, merge_size=2, temporal_patch_size=2, **half),
        tokenizer=tokenizer,
    )
    return save(out_dir, model, processor, QWEN3_VL if real_files else None)

"""LLaVA-1.5 and LLaVA-NeXT twins: a Llama text tower, a CLIP vision tower, LLaMA-style tokens."""

from __future__ import annotations

import os
from collections.abc import Iterable

from .common import (
    check_single_tokens,
    clip_vision_config,
    embedding_rows,
    llama_text_config,
    save,
    seeded_init,
    set_special_ids,
    token_ids,
    train_byte_level_bpe,
)

# LLaMA-style special tokens; order fixes their ids (unk=0, bos=1, eos=2, ...).
_LLAVA_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]


def llama_style_tokenizer(extra_words: Iterable[str]):
    """Byte-level BPE with LLaMA's special tokens and ``<image>``, as a HF tokenizer.

    Like LLaMA's tokenizer it prepends ``<s>`` when ``add_special_tokens`` is
    true (LLaMA-Factory itself encodes with ``add_special_tokens=False``).
    """
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    raw = train_byte_level_bpe(_LLAVA_SPECIALS, extra_words)
    bos_id = raw.token_to_id("<s>")
    raw.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )
    check_single_tokens(tokenizer, extra_words)
    return tokenizer


# --------------------------------------------------------------------------- #
# LLaVA-1.5
# --------------------------------------------------------------------------- #
def build_tiny_llava(
    out_dir: str | os.PathLike,
    seed: int = 0,
    image_size: int = 32,
    vocab: Iterable[str] | None = None,
    *,
    patch_size: int = 8,
    head_dim: int = 16,
) -> str:
    """Build a tiny LLaVA-1.5 twin (template ``llava``) in ``out_dir``.

    ``head_dim``: the language model's attention head size (4 heads, so its width is
    ``4 * head_dim``); vLLM's CPU attention needs 32 or more.

    ``image_size``/``patch_size`` set the vision grid: each image becomes
    ``(image_size // patch_size) ** 2`` ``<image>`` tokens (16 by default; the
    CLS token is dropped by ``vision_feature_select_strategy="default"``).
    ``vocab``: extra words that must be single tokens (with and without a
    leading space), e.g. the colours and shapes a caller will teach.
    Returns ``out_dir`` as ``str``.
    """
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    if image_size % patch_size:
        raise ValueError("image_size must be a multiple of patch_size")
    extra = list(vocab or [])
    tokenizer = llama_style_tokenizer(extra)
    ids = token_ids(tokenizer, _LLAVA_SPECIALS)
    num_patches = (image_size // patch_size) ** 2

    config = LlavaConfig(
        vision_config=clip_vision_config(image_size, patch_size),
        text_config=llama_text_config(embedding_rows(tokenizer), bos=ids["<s>"], eos=ids["</s>"], pad=ids["<pad>"], hidden=4 * head_dim),
        image_token_index=ids["<image>"],
        vision_feature_select_strategy="default",  # drop CLS, as LLaVA-1.5 does
        vision_feature_layer=-1,  # last layer of the 2-layer tower (real: -2 of 24)
        image_seq_length=num_patches,
    )
    model = seeded_init(LlavaForConditionalGeneration, config, seed)
    set_special_ids(model, bos=ids["<s>"], eos=ids["</s>"], pad=ids["<pad>"])

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # the CLS token of the CLIP tower
        image_token="<image>",
    )
    return save(out_dir, model, processor)


# --------------------------------------------------------------------------- #
# LLaVA-NeXT (LLaVA-1.6)
# --------------------------------------------------------------------------- #
def build_tiny_llava_next(
    out_dir: str | os.PathLike,
    seed: int = 0,
    image_size: int = 32,
    vocab: Iterable[str] | None = None,
    *,
    patch_size: int = 8,
    head_dim: int = 16,
) -> str:
    """Build a tiny LLaVA-NeXT twin (template ``llava_next``) in ``out_dir``.

    AnyRes tiling uses grid pinpoints of one or two ``image_size`` tiles, so an
    image becomes 16 (base view) + up to 40 (tiles, unpadded, plus one newline
    per row) = at most 56 ``<image>`` tokens at the defaults.
    ``vocab`` and ``head_dim`` as in :func:`build_tiny_llava`. Returns ``out_dir`` as ``str``.
    """
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
    )

    if image_size % patch_size:
        raise ValueError("image_size must be a multiple of patch_size")
    extra = list(vocab or [])
    tokenizer = llama_style_tokenizer(extra)
    ids = token_ids(tokenizer, _LLAVA_SPECIALS)
    s = image_size
    pinpoints = [[s, s], [s, 2 * s], [2 * s, s]]  # small: 1x1, 1x2, 2x1 tiles

    config = LlavaNextConfig(
        vision_config=clip_vision_config(image_size, patch_size),
        text_config=llama_text_config(embedding_rows(tokenizer), bos=ids["<s>"], eos=ids["</s>"], pad=ids["<pad>"], hidden=4 * head_dim),
        image_token_index=ids["<image>"],
        image_grid_pinpoints=pinpoints,  # must match the image processor's
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        image_seq_length=(s // patch_size) ** 2,
    )
    model = seeded_init(LlavaNextForConditionalGeneration, config, seed)
    set_special_ids(model, bos=ids["<s>"], eos=ids["</s>"], pad=ids["<pad>"])

    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": s},
        crop_size={"height": s, "width": s},
        image_grid_pinpoints=pinpoints,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token="<image>",
    )
    return save(out_dir, model, processor)

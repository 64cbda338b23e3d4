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
from .shipped import LLAVA, LLAVA_NEXT

# llava-hf's CLIP preprocessing (preprocessor_config.json of llava-hf/bakLlava-v1-hf and of llava-hf/llava-1.5-7b-hf
# as copied by HuggingFaceH4/sft-llava-1.5-7b-hf): bicubic resize of the short side, centre crop, OpenAI CLIP's
# mean and std. Only the size is the twin's own (336 px there).
CLIP_PREPROCESSING = dict(
    do_resize=True,
    resample=3,  # PIL bicubic
    do_center_crop=True,
    do_rescale=True,
    rescale_factor=1 / 255,
    do_normalize=True,
    image_mean=[0.48145466, 0.4578275, 0.40821073],
    image_std=[0.26862954, 0.26130258, 0.27577711],
    do_convert_rgb=True,
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
    real_files: bool = True,
) -> str:
    """Build a tiny LLaVA-1.5 twin (template ``llava``) in ``out_dir``.

    ``head_dim``: the language model's attention head size (4 heads, so its width is
    ``4 * head_dim``); vLLM's CPU attention needs 32 or more.

    ``image_size``/``patch_size`` set the vision grid: each image becomes
    ``(image_size // patch_size) ** 2`` ``<image>`` tokens (16 by default; the
    CLS token is dropped by ``vision_feature_select_strategy="default"``).
    ``vocab``: extra words that must be single tokens (with and without a
    leading space), e.g. the colours and shapes a caller will teach.
    ``real_files``: ship llava-hf/llava-1.5-7b-hf's generation config, chat template and float16
    weights (``shipped.py``); False writes the plain files the golden builds were made with (float32).
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

    image_processor = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}, **CLIP_PREPROCESSING)
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # the CLS token of the CLIP tower
        image_token="<image>",
    )
    return save(out_dir, model, processor, LLAVA if real_files else None)


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
    real_files: bool = True,
) -> str:
    """Build a tiny LLaVA-NeXT twin (template ``llava_next``) in ``out_dir``.

    AnyRes tiling uses llava-hf/llava-v1.6-vicuna-7b-hf's grid pinpoints (1x2, 2x1, 2x2, 3x1 and
    1x3 tiles) with ``image_size`` tiles, so an image becomes 16 (base view) + up to 64 tiled
    features (unpadded) + one newline per row: at most 88 ``<image>`` tokens at the defaults.
    ``vocab``, ``head_dim`` and ``real_files`` as in :func:`build_tiny_llava`. Returns ``out_dir`` as ``str``.
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
    # config.json of llava-hf/llava-v1.6-vicuna-7b-hf: [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
    # in 336-px tiles; here in the twin's tiles
    pinpoints = [[s, 2 * s], [2 * s, s], [2 * s, 2 * s], [3 * s, s], [s, 3 * s]]

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
        # LLaVA-NeXT's own preprocessor_config.json could not be read here; CLIP_PREPROCESSING is also this class's default
        size={"shortest_edge": s},
        crop_size={"height": s, "width": s},
        image_grid_pinpoints=pinpoints,
        **CLIP_PREPROCESSING,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token="<image>",
    )
    return save(out_dir, model, processor, LLAVA_NEXT if real_files else None)

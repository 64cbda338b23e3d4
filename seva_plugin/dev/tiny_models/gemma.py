"""A Gemma 3 twin."""

from __future__ import annotations

import os
from collections.abc import Iterable

from .common import TWIN_HEADS, TWIN_HIDDEN, check_single_tokens, embedding_rows, save, seeded_init, set_special_ids, token_ids, train_byte_level_bpe
from .shipped import GEMMA3

_GEMMA3_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"]


def build_tiny_gemma3(
    out_dir: str | os.PathLike,
    seed: int = 0,
    vocab: Iterable[str] | None = None,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    tokens_per_image: int = 4,
    real_files: bool = True,
) -> str:
    """Build a tiny Gemma 3 twin (``Gemma3ForConditionalGeneration``, template ``gemma3``) in ``out_dir``.

    Like google/gemma-3-4b-it: a SigLIP tower whose ``(image_size // patch_size) ** 2`` patches are
    average-pooled to ``tokens_per_image`` ``<image_soft_token>`` tokens between
    ``<start_of_image>`` and ``<end_of_image>``; a Gemma 3 text tower with one sliding-window and
    one full-attention layer (head_dim 32); ``<bos>`` starts a text and ``<end_of_turn>`` ends a
    turn. Every image is resized to ``image_size`` (one row of ``pixel_values``) unless
    LLaMA-Factory's ``image_do_pan_and_scan`` is on: then wide or tall images add crops.
    ``vocab`` and ``real_files`` as in :func:`build_tiny_llava`. Returns ``out_dir`` as ``str``.
    """
    from tokenizers import processors
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessor, Gemma3Processor, PreTrainedTokenizerFast

    side = int(tokens_per_image**0.5)
    if side * side != tokens_per_image or (image_size // patch_size) % side:
        raise ValueError("tokens_per_image must be a square whose side divides image_size // patch_size")
    extra = list(vocab or [])
    raw = train_byte_level_bpe(_GEMMA3_SPECIALS, extra)
    bos_id = raw.token_to_id("<bos>")
    raw.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", bos_id)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"},
    )
    check_single_tokens(tokenizer, extra)
    ids = token_ids(tokenizer, _GEMMA3_SPECIALS)
    hidden, heads = TWIN_HIDDEN, TWIN_HEADS
    config = Gemma3Config(
        text_config=dict(
            vocab_size=embedding_rows(tokenizer),
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=2,
            num_attention_heads=heads,
            num_key_value_heads=2,
            head_dim=hidden // heads,
            query_pre_attn_scalar=hidden // heads,
            sliding_window=64,
            layer_types=["sliding_attention", "full_attention"],
            max_position_embeddings=4096,
            bos_token_id=ids["<bos>"],
            eos_token_id=ids["<eos>"],
            pad_token_id=ids["<pad>"],
        ),
        vision_config=dict(
            model_type="siglip_vision_model",
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=patch_size,
            vision_use_head=False,
        ),
        mm_tokens_per_image=tokens_per_image,
        boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"],
        image_token_index=ids["<image_soft_token>"],
        tie_word_embeddings=True,
    )
    model = seeded_init(Gemma3ForConditionalGeneration, config, seed)
    # transformers initialises the image projection to zeros, so images would change nothing; a trained
    # Gemma 3's is not. Seeded unit-scale weights let the images steer this random model's answers (with
    # 0.05, clean and noised images gave the same answer for 5 records in 6; with 1.0, for 1 in 6).
    import torch

    projection = model.model.multi_modal_projector.mm_input_projection_weight
    with torch.no_grad():
        projection.copy_(torch.randn(projection.shape, generator=torch.Generator().manual_seed(seed)))
    # Like gemma-3-it: generation stops at <end_of_turn> or <eos>.
    set_special_ids(model, bos=ids["<bos>"], eos=[ids["<eos>"], ids["<end_of_turn>"]], pad=ids["<pad>"])
    # google/gemma-3-4b-it preprocessor_config.json (as copied by Synthetica-AI/gemma-3-4b-it, "Copy model google/gemma-3-4b-it"):
    # bilinear resize to a square (896 px there), mean and std 0.5, pan-and-scan unset (null) unless asked for.
    image_processor = Gemma3ImageProcessor(
        size={"height": image_size, "width": image_size},
        resample=2,  # PIL bilinear
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_pan_and_scan=None,
        pan_and_scan_min_crop_size=None,
        pan_and_scan_max_num_crops=None,
        pan_and_scan_min_ratio_to_activate=None,
    )
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_length=tokens_per_image)
    return save(out_dir, model, processor, GEMMA3 if real_files else None)

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
``build_tiny_llava_next``  llava-hf/llava-v1.6-vicuna-7b   ``llava_next``
``build_tiny_qwen2_vl``    Qwen/Qwen2-VL-2B-Instruct       ``qwen2_vl``
``build_tiny_qwen2_5_vl``  Qwen/Qwen2.5-VL-3B-Instruct     ``qwen2_vl``
``build_tiny_qwen3_vl``    Qwen/Qwen3-VL-4B-Instruct       ``qwen3_vl_nothink`` / ``qwen3_vl``
``build_tiny_internvl3``   OpenGVLab/InternVL3-1B-hf       ``intern_vl``
``build_tiny_gemma3``      google/gemma-3-4b-it            ``gemma3``
``build_tiny_clip``        openai/clip-vit-large-patch14   (CSR visual score)
=====================  ==================================  =====================

Weights are random (seeded), so generations are gibberish until a caller trains
the model; the point is that shapes, special tokens and processors match.
Heavy libraries (torch, transformers, tokenizers) are imported inside functions
so importing this module stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

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

# Small English corpus for the tokenizers: enough words that prompts such as
# "Describe the image." or "What color is the shape?" become a few whole-word
# tokens instead of byte soup.
BASE_WORDS: tuple[str, ...] = tuple(
    """
    a an the this that these those it its is are was were be been being am do does did
    have has had can could will would should may might must not no yes and or but if
    then so because of in on at to from with without by for about into over under
    above below left right top bottom middle center front back near far next between
    behind inside outside up down here there where what which who whom whose why how
    when many much more most less few some any all each every one two three four five
    six seven eight nine ten zero first second third last other same different
    image picture photo photograph scene view frame background foreground object
    objects shape shapes thing things color colour colors size big small large tiny
    little long short tall wide narrow bright dark light heavy round square circle
    triangle rectangle star cross line dot ring oval diamond red green blue yellow
    orange purple pink brown black white gray grey cyan magenta gold silver
    describe description answer question questions caption provide provided
    sentence word words phrase single using use used text reference token tokens
    ocr title author book cover genre type year name number there's it's
    i you he she we they me him her us them my your his our their
    man woman person people child dog cat car bus tree house sky water road sign
    street table chair cup plate food window door wall floor room building city
    see look looks show shows shown contain contains containing appear appears
    sit sits stand stands hold holds wear wears read reads write written say says
    user assistant system chat helpful detailed polite answers curious human
    artificial intelligence gives
    """.split()
)


# --------------------------------------------------------------------------- #
# shared helpers
# --------------------------------------------------------------------------- #
def _corpus(extra_words: Iterable[str] = ()) -> list[str]:
    """Training lines: every word with and without a leading space, and capitalised.

    Byte-level BPE treats "red" and " red" as different pre-tokens, so all
    forms are listed; the trainers below merge until every pre-token of the
    corpus is a single token.
    """
    words = list(dict.fromkeys([*BASE_WORDS, *extra_words]))  # keep order, drop dups
    lines = []
    for word in words:
        cap = word.capitalize()
        lines.extend([word, f" {word}", cap, f" {cap}"])
    # a few real sentences so punctuation and common pairs merge too
    lines += [
        "USER: <image>What color is the shape? ASSISTANT: The shape is red.",
        "Describe the image. There is a small blue circle on the left.",
        "Provide a one-sentence caption for the provided image.",
        "Answer the question using a single word or phrase.",
        "A chat between a curious user and an artificial intelligence assistant.",
        "The assistant gives helpful, detailed, and polite answers to the user's questions.",
        "0 1 2 3 4 5 6 7 8 9 10 ? ! . , : ; ' \" ( ) - \n",
    ]
    return lines


def _train_byte_level_bpe(specials: list[str], extra_words: Iterable[str] = ()):
    """Train a byte-level BPE ``tokenizers.Tokenizer`` (GPT-2 / Qwen style).

    Byte-level means any text is encodable (no ``<unk>`` at run time) and
    decoding restores spaces exactly. Specials get ids 0..len(specials)-1 in
    the given order. BPE training is deterministic, so the same inputs give
    the same vocabulary.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=16384,  # an upper bound: merging stops once every word is one token
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(extra_words), trainer=trainer)
    return tok


def _check_single_tokens(tokenizer, words: Iterable[str]) -> None:
    """Fail loudly if a requested vocabulary word would be split."""
    for word in words:
        for form in (word, f" {word}"):
            ids = tokenizer.encode(form, add_special_tokens=False)
            if len(ids) != 1:
                raise ValueError(f"vocab word {form!r} is not a single token: {ids}")


def _embedding_rows(tokenizer, multiple: int = 8) -> int:
    """Embedding size for ``tokenizer``: largest id + 1, rounded up as real checkpoints do."""
    n = max(tokenizer.get_vocab().values()) + 1
    return (n + multiple - 1) // multiple * multiple


def _seeded_init(model_cls, config, seed: int):
    """Instantiate ``model_cls(config)`` with weights fixed by ``seed``.

    The global torch RNG is forked, so building a model does not disturb the
    caller's random state.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    return model.eval()


def _set_special_ids(model, *, bos: int | None, eos: int | list[int], pad: int) -> None:
    """Put the tokenizer's special ids on the top-level config and generation config.

    Composite configs (Llava, Qwen2-VL) keep these ids only in ``text_config``;
    without them on the top level ``generate`` has no pad id for batched
    (left-padded) input and the HF/TRL trainer "realigns" them with a warning.
    Greedy decoding is the default, as in SeVa.
    """
    first_eos = eos[0] if isinstance(eos, list) else eos
    model.config.bos_token_id = bos
    model.config.eos_token_id = first_eos
    model.config.pad_token_id = pad
    gen = model.generation_config
    gen.bos_token_id = bos
    gen.eos_token_id = eos
    gen.pad_token_id = pad
    gen.do_sample = False


def _save(out_dir: str | os.PathLike, model, processor) -> str:
    """Save model and processor (which also saves tokenizer and image processor)."""
    out = os.fspath(out_dir)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _llama_text_config(vocab_size: int, *, bos: int, eos: int, pad: int, hidden: int = 64):
    """A 2-layer Llama decoder with ~40k parameters per layer."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,  # generation of 512 tokens after a prompt must fit
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
        tie_word_embeddings=False,
    )


def _clip_vision_config(image_size: int, patch_size: int, hidden: int = 32):
    """A 2-layer CLIP ViT (the LLaVA vision tower)."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        projection_dim=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
    )


# LLaMA-style special tokens; order fixes their ids (unk=0, bos=1, eos=2, ...).
_LLAVA_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]


def _llama_style_tokenizer(extra_words: Iterable[str]):
    """Byte-level BPE with LLaMA's special tokens and ``<image>``, as a HF tokenizer.

    Like LLaMA's tokenizer it prepends ``<s>`` when ``add_special_tokens`` is
    true (LLaMA-Factory itself encodes with ``add_special_tokens=False``).
    """
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    raw = _train_byte_level_bpe(_LLAVA_SPECIALS, extra_words)
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
    _check_single_tokens(tokenizer, extra_words)
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
    tokenizer = _llama_style_tokenizer(extra)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _LLAVA_SPECIALS}
    num_patches = (image_size // patch_size) ** 2

    config = LlavaConfig(
        vision_config=_clip_vision_config(image_size, patch_size),
        text_config=_llama_text_config(_embedding_rows(tokenizer), bos=ids["<s>"], eos=ids["</s>"], pad=ids["<pad>"], hidden=4 * head_dim),
        image_token_index=ids["<image>"],
        vision_feature_select_strategy="default",  # drop CLS, as LLaVA-1.5 does
        vision_feature_layer=-1,  # last layer of the 2-layer tower (real: -2 of 24)
        image_seq_length=num_patches,
    )
    model = _seeded_init(LlavaForConditionalGeneration, config, seed)
    _set_special_ids(model, bos=ids["<s>"], eos=ids["</s>"], pad=ids["<pad>"])

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
    return _save(out_dir, model, processor)


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
    tokenizer = _llama_style_tokenizer(extra)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _LLAVA_SPECIALS}
    s = image_size
    pinpoints = [[s, s], [s, 2 * s], [2 * s, s]]  # small: 1x1, 1x2, 2x1 tiles

    config = LlavaNextConfig(
        vision_config=_clip_vision_config(image_size, patch_size),
        text_config=_llama_text_config(_embedding_rows(tokenizer), bos=ids["<s>"], eos=ids["</s>"], pad=ids["<pad>"], hidden=4 * head_dim),
        image_token_index=ids["<image>"],
        image_grid_pinpoints=pinpoints,  # must match the image processor's
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        image_seq_length=(s // patch_size) ** 2,
    )
    model = _seeded_init(LlavaNextForConditionalGeneration, config, seed)
    _set_special_ids(model, bos=ids["<s>"], eos=ids["</s>"], pad=ids["<pad>"])

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
    return _save(out_dir, model, processor)


# --------------------------------------------------------------------------- #
# Qwen2-VL
# --------------------------------------------------------------------------- #
# Qwen2's special tokens; the template ``qwen2_vl`` and the processor look these
# up by text, and the model config needs their ids.
_QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


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
        PreTrainedTokenizerFast,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    extra = list(vocab or [])
    raw = _train_byte_level_bpe(_QWEN_SPECIALS, extra)
    # Qwen2 has no BOS; <|endoftext|> pads, <|im_end|> ends a chat turn.
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    _check_single_tokens(tokenizer, extra)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _QWEN_SPECIALS}

    heads = 4
    hidden = heads * head_dim
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=_embedding_rows(tokenizer),
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=2,
            num_attention_heads=heads,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            # multimodal RoPE: (temporal, height, width) sections sum to head_dim / 2
            rope_scaling={"type": "mrope", "mrope_section": [head_dim // 8, 3 * head_dim // 16, 3 * head_dim // 16]},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
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
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    assert sum(config.text_config.rope_parameters["mrope_section"]) == head_dim // 2
    model = _seeded_init(Qwen2VLForConditionalGeneration, config, seed)
    # Like Qwen2-VL-Instruct: no BOS, and generation stops at either end token.
    _set_special_ids(model, bos=None, eos=[ids["<|im_end|>"], ids["<|endoftext|>"]], pad=ids["<|endoftext|>"])

    # Pass ``size`` explicitly: the processors' constructors otherwise mutate a
    # class-level default dict when given min/max pixels.
    size = {"shortest_edge": 28 * 28, "longest_edge": max_pixels}
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=dict(size)),
        video_processor=Qwen2VLVideoProcessor(size=dict(size)),
        tokenizer=tokenizer,
    )
    return _save(out_dir, model, processor)


# --------------------------------------------------------------------------- #
# CLIP (CSR's image-text score)
# --------------------------------------------------------------------------- #
def _clip_tokenizer(extra_words: list[str]):
    """A real ``CLIPTokenizer`` with vocabulary and merges learned from the built-in corpus.

    CLIP's BPE marks word ends with ``</w>``. The ``tokenizers`` trainer assigns
    ids to those end symbols in hash-map order (different on every run), so the
    merges are learned here with a small deterministic BPE loop instead: ties
    are broken alphabetically and merging continues until every corpus word is
    one token. The layout follows openai/clip: 256 byte symbols, the same with
    ``</w>``, the merges, then the two specials.
    """
    from collections import Counter

    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    # CLIPTokenizer's own normaliser (lower-casing) and pre-tokeniser split the corpus.
    pipeline = CLIPTokenizer().backend_tokenizer
    words: Counter[tuple[str, ...]] = Counter()
    for line in _corpus(extra_words):
        text = pipeline.normalizer.normalize_str(line)
        for piece, _ in pipeline.pre_tokenizer.pre_tokenize_str(text):
            words[(*piece[:-1], piece[-1] + "</w>")] += 1

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = alphabet + [c + "</w>" for c in alphabet]
    known = set(vocab)
    merges: list[tuple[str, str]] = []
    while True:
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, count in words.items():
            for pair in zip(symbols, symbols[1:], strict=False):
                pairs[pair] += count
        if not pairs:  # every word is a single token
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        if best[0] + best[1] not in known:  # ("ab", "c") and ("a", "bc") make the same token
            known.add(best[0] + best[1])
            vocab.append(best[0] + best[1])
        words = Counter({_merge_pair(symbols, best): count for symbols, count in words.items()})

    bos, eos = "<|startoftext|>", "<|endoftext|>"
    vocab += [bos, eos]
    tokenizer = CLIPTokenizer(
        vocab={token: i for i, token in enumerate(vocab)},
        merges=merges,
        bos_token=bos,
        eos_token=eos,
        pad_token=eos,  # as in openai/clip
        unk_token=eos,
        model_max_length=77,
    )
    for word in extra_words:  # CLIP lower-cases and marks the word end with </w>
        if len(tokenizer.tokenize(word)) != 1:
            raise ValueError(f"vocab word {word!r} is not a single CLIP token")
    return tokenizer


def _merge_pair(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """Replace every adjacent occurrence of ``pair`` in ``symbols`` by its concatenation."""
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


def build_tiny_clip(
    out_dir: str | os.PathLike,
    seed: int = 0,
    image_size: int = 32,
    vocab: Iterable[str] | None = None,
    *,
    patch_size: int = 8,
) -> str:
    """Build a tiny ``CLIPModel`` + ``CLIPProcessor`` in ``out_dir``.

    Loadable with ``CLIPModel.from_pretrained`` / ``CLIPProcessor.from_pretrained``.
    The tokenizer is a real ``CLIPTokenizer`` (lower-cased byte-level BPE with
    ``</w>`` word ends) whose merges are trained on the built-in corpus.
    Returns ``out_dir`` as ``str``.
    """
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tokenizer = _clip_tokenizer(list(vocab or []))
    config = CLIPConfig(
        text_config=dict(
            vocab_size=_embedding_rows(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=_clip_vision_config(image_size, patch_size).to_dict(),
        projection_dim=32,
    )
    model = _seeded_init(CLIPModel, config, seed)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
    )
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return _save(out_dir, model, processor)


# --------------------------------------------------------------------------- #
# Families LLaMA-Factory users train now: Qwen2.5-VL, Qwen3-VL, InternVL3, Gemma 3
# --------------------------------------------------------------------------- #
# Their text towers use head_dim 32 (vLLM's CPU attention needs at least 32).
_TWIN_HIDDEN, _TWIN_HEADS = 128, 4  # head_dim 32


def _qwen_style_tokenizer(specials: list[str], extra: list[str], extra_special_tokens: dict, added: Iterable[str] = ()):
    """Byte-level BPE with Qwen's conventions: no BOS, ``<|im_end|>`` ends a turn, ``<|endoftext|>`` pads.
    ``added``: tokens added as ordinary (non-special) tokens, as Qwen3 adds ``<think>``."""
    from transformers import PreTrainedTokenizerFast

    raw = _train_byte_level_bpe(specials, extra)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        extra_special_tokens=extra_special_tokens,
    )
    if added:
        tokenizer.add_tokens(list(added), special_tokens=False)
    _check_single_tokens(tokenizer, extra)
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
        Qwen2VLVideoProcessor,
    )

    extra = list(vocab or [])
    tokenizer = _qwen_style_tokenizer(_QWEN_SPECIALS, extra, {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"})
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _QWEN_SPECIALS}
    hidden, heads = _TWIN_HIDDEN, _TWIN_HEADS
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=_embedding_rows(tokenizer),
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=2,
            num_attention_heads=heads,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [4, 6, 6]},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
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
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    assert sum(config.text_config.rope_parameters["mrope_section"]) == hidden // heads // 2
    model = _seeded_init(Qwen2_5_VLForConditionalGeneration, config, seed)
    _set_special_ids(model, bos=None, eos=[ids["<|im_end|>"], ids["<|endoftext|>"]], pad=ids["<|endoftext|>"])
    size = {"shortest_edge": 28 * 28, "longest_edge": max_pixels}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=dict(size)),
        video_processor=Qwen2VLVideoProcessor(size=dict(size)),
        tokenizer=tokenizer,
    )
    return _save(out_dir, model, processor)


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
    tokenizer = _qwen_style_tokenizer(
        _QWEN_SPECIALS, extra, {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"}, added=("<think>", "</think>")
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _QWEN_SPECIALS}
    hidden, heads = _TWIN_HIDDEN, _TWIN_HEADS
    config = Qwen3VLConfig(
        text_config=dict(
            vocab_size=_embedding_rows(tokenizer),
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=2,
            num_attention_heads=heads,
            num_key_value_heads=2,
            head_dim=hidden // heads,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [6, 5, 5], "mrope_interleaved": True},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
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
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    model = _seeded_init(Qwen3VLForConditionalGeneration, config, seed)
    _set_special_ids(model, bos=None, eos=[ids["<|im_end|>"], ids["<|endoftext|>"]], pad=ids["<|endoftext|>"])
    size = {"shortest_edge": 32 * 32, "longest_edge": max_pixels}
    half = dict(image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])  # Qwen3-VL's normalisation
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=dict(size), patch_size=16, merge_size=2, temporal_patch_size=2, **half),
        video_processor=Qwen3VLVideoProcessor(size=dict(size), patch_size=16, merge_size=2, temporal_patch_size=2, **half),
        tokenizer=tokenizer,
    )
    return _save(out_dir, model, processor)


_INTERNVL_SPECIALS = [*_QWEN_SPECIALS, "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]


def build_tiny_internvl3(
    out_dir: str | os.PathLike,
    seed: int = 0,
    vocab: Iterable[str] | None = None,
    *,
    image_size: int = 56,
    patch_size: int = 14,
) -> str:
    """Build a tiny InternVL3 twin (transformers' own ``InternVLForConditionalGeneration``,
    template ``intern_vl``) in ``out_dir``.

    Like OpenGVLab/InternVL3-1B-hf: a Qwen2 text tower, an InternViT vision tower and a
    pixel-shuffle (0.5) projector. Each ``image_size`` tile becomes
    ``(image_size // patch_size) ** 2 / 4`` ``<IMG_CONTEXT>`` tokens (4 at the defaults) between
    ``<img>`` and ``</img>``. One tile an image unless LLaMA-Factory's ``crop_to_patches`` is on:
    then a grid of up to 12 tiles plus a thumbnail. ``vocab`` as in :func:`build_tiny_llava`.
    Returns ``out_dir`` as ``str``.
    """
    from transformers import GotOcr2ImageProcessor, InternVLConfig, InternVLForConditionalGeneration, InternVLProcessor, InternVLVideoProcessor

    if image_size % (2 * patch_size):
        raise ValueError("image_size must be a multiple of 2 * patch_size (pixel shuffle halves the grid)")
    extra = list(vocab or [])
    tokenizer = _qwen_style_tokenizer(
        _INTERNVL_SPECIALS,
        extra,
        {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"},
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _INTERNVL_SPECIALS}
    hidden, heads = _TWIN_HIDDEN, _TWIN_HEADS
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
        text_config=dict(
            model_type="qwen2",
            vocab_size=_embedding_rows(tokenizer),
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=2,
            num_attention_heads=heads,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
            tie_word_embeddings=False,
        ),
        image_token_id=ids["<IMG_CONTEXT>"],
        image_seq_length=tokens_per_tile,
        downsample_ratio=0.5,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )
    model = _seeded_init(InternVLForConditionalGeneration, config, seed)
    _set_special_ids(model, bos=None, eos=[ids["<|im_end|>"], ids["<|endoftext|>"]], pad=ids["<|endoftext|>"])
    imagenet = dict(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])  # InternVL's normalisation
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size={"height": image_size, "width": image_size}, crop_to_patches=False, min_patches=1, max_patches=12, **imagenet),
        video_processor=InternVLVideoProcessor(size={"height": image_size, "width": image_size}, **imagenet),
        tokenizer=tokenizer,
        image_seq_length=tokens_per_tile,
    )
    return _save(out_dir, model, processor)


_GEMMA3_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"]


def build_tiny_gemma3(
    out_dir: str | os.PathLike,
    seed: int = 0,
    vocab: Iterable[str] | None = None,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    tokens_per_image: int = 4,
) -> str:
    """Build a tiny Gemma 3 twin (``Gemma3ForConditionalGeneration``, template ``gemma3``) in ``out_dir``.

    Like google/gemma-3-4b-it: a SigLIP tower whose ``(image_size // patch_size) ** 2`` patches are
    average-pooled to ``tokens_per_image`` ``<image_soft_token>`` tokens between
    ``<start_of_image>`` and ``<end_of_image>``; a Gemma 3 text tower with one sliding-window and
    one full-attention layer (head_dim 32); ``<bos>`` starts a text and ``<end_of_turn>`` ends a
    turn. Every image is resized to ``image_size`` (one row of ``pixel_values``) unless
    LLaMA-Factory's ``image_do_pan_and_scan`` is on: then wide or tall images add crops.
    ``vocab`` as in :func:`build_tiny_llava`. Returns ``out_dir`` as ``str``.
    """
    from tokenizers import processors
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessor, Gemma3Processor, PreTrainedTokenizerFast

    side = int(tokens_per_image**0.5)
    if side * side != tokens_per_image or (image_size // patch_size) % side:
        raise ValueError("tokens_per_image must be a square whose side divides image_size // patch_size")
    extra = list(vocab or [])
    raw = _train_byte_level_bpe(_GEMMA3_SPECIALS, extra)
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
    _check_single_tokens(tokenizer, extra)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _GEMMA3_SPECIALS}
    hidden, heads = _TWIN_HIDDEN, _TWIN_HEADS
    config = Gemma3Config(
        text_config=dict(
            vocab_size=_embedding_rows(tokenizer),
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
    model = _seeded_init(Gemma3ForConditionalGeneration, config, seed)
    # transformers initialises the image projection to zeros, so images would change nothing; a trained
    # Gemma 3's is not. Seeded unit-scale weights let the images steer this random model's answers (with
    # 0.05, clean and noised images gave the same answer for 5 records in 6; with 1.0, for 1 in 6).
    import torch

    projection = model.model.multi_modal_projector.mm_input_projection_weight
    with torch.no_grad():
        projection.copy_(torch.randn(projection.shape, generator=torch.Generator().manual_seed(seed)))
    # Like gemma-3-it: generation stops at <end_of_turn> or <eos>.
    _set_special_ids(model, bos=ids["<bos>"], eos=[ids["<eos>"], ids["<end_of_turn>"]], pad=ids["<pad>"])
    image_processor = Gemma3ImageProcessor(
        size={"height": image_size, "width": image_size}, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], do_pan_and_scan=False
    )
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_length=tokens_per_image)
    return _save(out_dir, model, processor)

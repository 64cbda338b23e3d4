"""What every tiny twin shares: the English corpus its tokenizer learns, seeded weights, special ids, saving."""

from __future__ import annotations

import os
from collections.abc import Iterable

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

# Twins of the families LLaMA-Factory users train now (Qwen2.5-VL, Qwen3-VL, InternVL3, Gemma 3) have
# text towers with head_dim 32: vLLM's CPU attention needs at least 32.
TWIN_HIDDEN, TWIN_HEADS = 128, 4


def corpus(extra_words: Iterable[str] = ()) -> list[str]:
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


def train_byte_level_bpe(specials: list[str], extra_words: Iterable[str] = ()):
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
    tok.train_from_iterator(corpus(extra_words), trainer=trainer)
    return tok


def check_single_tokens(tokenizer, words: Iterable[str]) -> None:
    """Fail loudly if a requested vocabulary word would be split."""
    for word in words:
        for form in (word, f" {word}"):
            ids = tokenizer.encode(form, add_special_tokens=False)
            if len(ids) != 1:
                raise ValueError(f"vocab word {form!r} is not a single token: {ids}")


def token_ids(tokenizer, tokens: Iterable[str]) -> dict[str, int]:
    """Each of ``tokens`` (single tokens) with its id."""
    return {t: tokenizer.convert_tokens_to_ids(t) for t in tokens}


def embedding_rows(tokenizer, multiple: int = 8) -> int:
    """Embedding size for ``tokenizer``: largest id + 1, rounded up as real checkpoints do."""
    n = max(tokenizer.get_vocab().values()) + 1
    return (n + multiple - 1) // multiple * multiple


def seeded_init(model_cls, config, seed: int):
    """Instantiate ``model_cls(config)`` with weights fixed by ``seed``.

    The global torch RNG is forked, so building a model does not disturb the
    caller's random state.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    return model.eval()


def set_special_ids(model, *, bos: int | None, eos: int | list[int], pad: int) -> None:
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


def save(out_dir: str | os.PathLike, model, processor, shipped=None) -> str:
    """Save model and processor (which also saves tokenizer and image processor). ``shipped``: the
    real checkpoint's generation config, chat template and dtype (``shipped.py``) to ship with it;
    None keeps the plain files (ids only, greedy, no chat template, float32)."""
    import torch

    from .shipped import write_shipped

    out = os.fspath(out_dir)
    os.makedirs(out, exist_ok=True)
    if shipped is not None and shipped.chat_template:
        processor.chat_template = shipped.chat_template
        processor.tokenizer.chat_template = shipped.chat_template
    if shipped is not None:
        model = model.to(getattr(torch, shipped.dtype))  # weights and config.json in the real checkpoint's dtype
    model.save_pretrained(out)
    processor.save_pretrained(out)
    if shipped is not None:
        write_shipped(out, shipped, processor.tokenizer)
    return out


def llama_text_config(vocab_size: int, *, bos: int, eos: int, pad: int, hidden: int = 64):
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


def clip_vision_config(image_size: int, patch_size: int, hidden: int = 32):
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

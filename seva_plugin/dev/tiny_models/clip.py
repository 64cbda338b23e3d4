"""A CLIP twin for CSR's image-text score, with a real ``CLIPTokenizer`` learned from the corpus."""

from __future__ import annotations

import os
from collections.abc import Iterable

from .common import clip_vision_config, corpus, embedding_rows, save, seeded_init


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
    for line in corpus(extra_words):
        text = pipeline.normalizer.normalize_str(line)
        for piece, _ in pipeline.pre_tokenizer.pre_tokenize_str(text):
            symbols = (*piece[:-1], piece[-1] + "</w>")
            words[symbols] += 1

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
        merges=merges,  # type: ignore[arg-type]  # transformers 5.6 annotates strings; it hands them to tokenizers' BPE, which takes pairs
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
            vocab_size=embedding_rows(tokenizer),
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
        vision_config=clip_vision_config(image_size, patch_size).to_dict(),
        projection_dim=32,
    )
    model = seeded_init(CLIPModel, config, seed)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
    )
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return save(out_dir, model, processor)

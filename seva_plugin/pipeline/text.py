"""Answer text normalisation shared by filters and the pipeline."""

from __future__ import annotations

# End-of-sequence text some models print literally when it is not a special token.
EOS_TEXTS = ("</s>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<eos>")


def strip_eos(text: str) -> str:
    """Trailing end-of-sequence text and surrounding whitespace removed (the official post-processing)."""
    text = text.strip()
    while (eos := next((e for e in EOS_TEXTS if text.endswith(e)), None)) is not None:
        text = text.removesuffix(eos).rstrip()
    return text


def normalise(text: str) -> str:
    """For comparing answers: end-of-sequence text removed, whitespace collapsed."""
    return " ".join(strip_eos(text).split())

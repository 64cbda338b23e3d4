"""Prompts and pixels exactly as ``llamafactory-cli train`` sees them, without model weights.

LLaMA-Factory's own loaders give the tokenizer, the processor and the chat template; its
multimodal plugin expands image tokens and processes images. Every backend renders through this
module, so generation and training see the same text, token ids and normalised pixels.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from seva_plugin.errors import ConfigError, RecordError
from seva_plugin.pipeline.records import IMAGE_TOKEN
from seva_plugin.pipeline.views import view_generator
from seva_plugin.plugins.backends.pixels import augment_tensors, rows_per_image

SENTINEL = "\x00"
# No tokenizer's tokens average more characters than this: a prompt longer than this many characters
# per allowed token is too long without tokenizing it (a 100,000-character prompt costs nothing).
CHARS_PER_TOKEN = 64


def infer_args(
    model: str,
    template: str,
    dtype: str = "float32",
    image_max_pixels: int | None = None,
    trust_remote_code: bool = False,
    adapter: str | None = None,
    inputs: dict[str, Any] | None = None,
):
    """LLaMA-Factory's ``(model_args, data_args, finetuning_args)`` for inference.

    ``inputs``: other LLaMA-Factory keys that change what the model sees, as the recipe sets them
    (``crop_to_patches``: InternVL tiles; ``image_do_pan_and_scan``: Gemma 3 crops;
    ``enable_thinking``: a reasoning template's prompt)."""
    os.environ.setdefault("LLAMAFACTORY_VERBOSITY", "WARN")  # keep the progress bar readable
    from llamafactory.hparams import get_infer_args

    args: dict[str, Any] = {"model_name_or_path": model, "template": template, "infer_dtype": dtype, "trust_remote_code": trust_remote_code}
    if image_max_pixels:
        args["image_max_pixels"] = image_max_pixels
    args.update(inputs or {})
    if adapter:
        args["adapter_name_or_path"] = adapter
    model_args, data_args, finetuning_args, _ = get_infer_args(args)
    return model_args, data_args, finetuning_args


def context_length(config) -> int | None:
    """The number of positions a model's text part takes (``max_position_embeddings`` and its
    older names), or None when its config does not say."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(text, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_max_new_tokens(max_new_tokens: int, context: int | None, context_name: str) -> None:
    """Refuse an answer longer than the context can hold beside a prompt, before the weights load:
    ``hf`` would try to generate it (10^9 ran for over 10 minutes) and vLLM would cap it unsaid."""
    if context is not None and max_new_tokens >= context:
        raise ConfigError(
            f"backend.max_new_tokens {max_new_tokens:,} does not fit in {context_name} of {context:,} tokens, "
            f"which holds the prompt too: set it below {context:,}."
        )


@dataclass
class Renderer:
    """Tokenizer, processor and LLaMA-Factory template of one model, with a lock: the fast
    tokenizer is not safe to call from two threads at once (the build's prefetch thread encodes
    while the main thread decodes)."""

    tokenizer: Any
    processor: Any
    template: Any  # llamafactory.data.Template
    context: int | None = None  # the model's context length in tokens (its config), when known
    max_prompt_tokens: int | None = None  # longer prompts raise RecordError too_long (set by the backend)

    def __post_init__(self):
        self.tokenizer.padding_side = "left"
        self.lock = threading.Lock()
        self._expansions: dict = {}
        from llamafactory.data.mm_plugin import PLUGINS

        # the template's image plugin by LLaMA-Factory's name for it (llava, qwen2_vl, intern_vl, gemma3, ...)
        self.plugin = next((name for name, cls in PLUGINS.items() if type(self.template.mm_plugin) is cls), "base")

    @classmethod
    def load(cls, model_args, data_args) -> Renderer:
        from llamafactory.data import get_template_and_fix_tokenizer
        from llamafactory.model import load_tokenizer
        from llamafactory.model.loader import load_config

        module = load_tokenizer(model_args)
        tokenizer, processor = module["tokenizer"], module["processor"]
        return cls(tokenizer, processor, get_template_and_fix_tokenizer(tokenizer, data_args), context_length(load_config(model_args)))

    # -- text --------------------------------------------------------------------------------
    def _expand_images(self, images) -> list[str]:
        """The image-token text each image expands to, cached by image size (all it depends on)."""
        key = tuple(img.size for img in images)
        if key not in self._expansions:
            content = SENTINEL.join([IMAGE_TOKEN] * len(images))
            (msg,) = self.template.mm_plugin.process_messages([{"role": "user", "content": content}], images, [], [], self.processor)
            self._expansions[key] = msg["content"].split(SENTINEL)
        return self._expansions[key]

    def image_rows(self, images) -> list[int]:
        """How many rows of ``pixel_values`` each image fills where the tensors do not say so
        (InternVL tiles, Gemma 3 crops; ``pixels.image_slices``), read off its expanded prompt."""
        return [rows_per_image(self.plugin, e, self.processor) for e in self._expand_images(images)]

    def prompt_ids(self, prompt: str, images) -> list[int]:
        """Token ids of the rendered user turn plus the assistant header, as LLaMA-Factory encodes them.

        Over ``max_prompt_tokens`` (image tokens included) it raises RecordError ``too_long``: before
        tokenizing when the text alone cannot fit, so a huge prompt costs nothing."""
        limit = self.max_prompt_tokens
        if limit is not None and len(prompt) > CHARS_PER_TOKEN * limit:
            raise RecordError(f"prompt too long: {len(prompt):,} characters cannot fit in the limit of {limit:,} tokens", "too_long")
        parts = prompt.split(IMAGE_TOKEN)
        expansions = self._expand_images(images)
        content = parts[0] + "".join(e + p for e, p in zip(expansions, parts[1:], strict=True))
        messages = [{"role": "user", "content": content}, {"role": "assistant", "content": ""}]
        with self.lock:
            ids, _ = self.template.encode_oneturn(self.tokenizer, messages, None, None)
            ids, _ = self.template.mm_plugin.process_token_ids(ids, None, images, [], [], self.tokenizer, self.processor)
        if limit is not None and len(ids) > limit:
            raise RecordError(f"prompt too long: {len(ids):,} tokens with its image tokens, over the limit of {limit:,}", "too_long")
        return ids

    def answer_ids(self, text: str) -> list[int]:
        """An answer prefix as training tokenizes a response: on its own, no special tokens."""
        if not text:
            return []
        with self.lock:
            return self.tokenizer.encode(text, add_special_tokens=False)

    def continuation(self, prefix_ids: list[int], new_ids: list[int]) -> str:
        """The text ``new_ids`` add after ``prefix_ids`` (decoded together, so a leading space that a
        tokenizer drops at the start of a text is kept)."""
        with self.lock:
            if not prefix_ids:
                return self.tokenizer.decode(new_ids, skip_special_tokens=True)
            head = self.tokenizer.decode(prefix_ids, skip_special_tokens=True)
            return self.tokenizer.decode(prefix_ids + new_ids, skip_special_tokens=True)[len(head) :]

    # -- pixels ------------------------------------------------------------------------------
    def mm_inputs(self, images_per_record: list[list], batch_ids: list[list[int]]) -> dict:
        """The processor's multimodal tensors for a batch, as LLaMA-Factory's collator builds them."""
        flat = [img for imgs in images_per_record for img in imgs]
        n = len(images_per_record)
        counts = [len(i) for i in images_per_record]
        return self.template.mm_plugin.get_mm_inputs(flat, [], [], counts, [0] * n, [0] * n, batch_ids, self.processor)

    def view_inputs(self, records: list, view, clean: tuple[list[list[int]], dict] | None = None) -> tuple[list[list[int]], dict]:
        """Prompt ids and multimodal tensors of ``records`` (``LoadedRecord``) under ``view``.

        Tensor-space augmenters noise a copy of the processed clean pixels (``clean``: this
        method's result for the clean view of the same records, if already made); pixel-space
        augmenters change the images before the processor, so the prompt is re-rendered for their
        sizes. Image ``k`` of a record is augmented with ``view_generator(record.seed, view.id, k)``.
        """
        augmenter = view.augmenter
        if augmenter is not None and augmenter.space != "tensor":
            images = [[augmenter(img, view_generator(r.seed, view.id, k)) for k, img in enumerate(r.images)] for r in records]
            ids = [self.prompt_ids(r.record.prompt, imgs) for r, imgs in zip(records, images, strict=True)]
            return ids, self.mm_inputs(images, ids)
        if clean is None:
            ids = [self.prompt_ids(r.record.prompt, r.images) for r in records]
            clean = ids, self.mm_inputs([r.images for r in records], ids)
        if augmenter is None:
            return clean
        ids, mm = clean
        rows = [n for r in records for n in self.image_rows(r.images)]
        return ids, augment_tensors(mm, augmenter, [(r.seed, len(r.images)) for r in records], view.id, rows)


def cut_answer(row: list[int], logprobs: list[float], eos: set[int], stops: tuple[str, ...], renderer: Renderer, prefix: list[int]):
    """``(text, finish reason, log-probs, token ids)`` of one generated row, the same for every
    backend: cut at its first end-of-sequence token (kept in ids and log-probs, not in the text;
    later tokens are padding) or right after its first stop string; else ``length``."""
    for n, token in enumerate(row):
        if token in eos:
            return renderer.continuation(prefix, row[:n]), "eos", logprobs[: n + 1], row[: n + 1]
    text = renderer.continuation(prefix, row)
    hits = [(text.find(s), s) for s in stops if s in text]
    if hits:
        at, stop = min(hits)
        for m in range(1, len(row) + 1):  # the token that completed the stop string
            if stop in renderer.continuation(prefix, row[:m]):
                return text[: at + len(stop)], "stop", logprobs[:m], row[:m]
    return text, "length", logprobs[: len(row)], row


def special_ids(tokenizer, config_value: Callable[[str], Any], eos: list[int]) -> list[int]:
    """Special tokens a sampled answer may not contain (end-of-sequence aside), the same for every
    backend: fed back as a prefix, an image placeholder would break the image-token count, a pad or
    BOS token the text. ``config_value(key)`` reads the model config (image and video token ids)."""
    banned = set(tokenizer.all_special_ids)
    banned |= {i for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(tok, "special", False)}
    for key in ("image_token_id", "image_token_index", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
        value = config_value(key)
        if isinstance(value, int):
            banned.add(value)
    return sorted(banned - set(eos))

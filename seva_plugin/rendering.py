"""Prompts and pixels exactly as ``llamafactory-cli train`` sees them: the API a backend renders with.

LLaMA-Factory's own loaders give the tokenizer, the processor and the chat template; its
multimodal plugin expands image tokens and processes images. The ``hf`` and ``vllm`` backends
render through this module, and so should any backend: then generation and training see the same
text, token ids and normalised pixels. For a backend author:

- :meth:`Renderer.load`: tokenizer, processor and template of a model, no weights;
- :meth:`Renderer.render`: a request's prompt (its ``prompt``/``system`` or the record's) as
  ``(text, ids)``, image tokens expanded; :meth:`Renderer.answer_ids`: a prefix as training
  tokenizes a response; :meth:`Renderer.score_ids`: the tokens a :class:`~seva_plugin.ScoreRequest` scores;
- :attr:`Renderer.stop_token_ids` (the only tokens that end an answer) and
  :meth:`Renderer.banned_token_ids` (what sampling never picks);
- :meth:`Renderer.view_inputs`: prompt ids and the processor's tensors for records under a view,
  augmenters applied; :func:`image_slices`: each image's rows of ``pixel_values``;
  :func:`token_types`: token-type ids for any ids (a prefix included), as training's collator makes them;
- :meth:`Renderer.completion`: a generated row read back as a :class:`~seva_plugin.Completion` by the
  rule every backend shares (end-of-sequence, stop strings, cut points);
  :meth:`Renderer.stop_candidates`: which tokens can complete a stop string (a backend's stop
  check need decode nothing after the others).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from seva_plugin.contract import Completion, View
from seva_plugin.errors import RecordError
from seva_plugin.pipeline.records import IMAGE_TOKEN, LoadedRecord
from seva_plugin.pipeline.views import view_generator
from seva_plugin.plugins.backends.pixels import augment_tensors, image_slices, rows_per_image

__all__ = ["RenderedPrompt", "Renderer", "image_slices", "token_types"]

SENTINEL = "\x00"
# No tokenizer's tokens average more characters than this: a prompt longer than this many characters
# per allowed token is too long without tokenizing it (a 100,000-character prompt costs nothing).
CHARS_PER_TOKEN = 64
Prompts = Sequence[tuple[str, str | None]]  # per record: (user turn, system or None)


@dataclass(frozen=True)
class RenderedPrompt:
    """A rendered prompt: the user turn and the assistant header, image tokens expanded. ``ids`` are
    what training encodes; ``text`` is those ids decoded (special tokens kept)."""

    text: str
    ids: list[int]


class Renderer:
    """Tokenizer, processor and LLaMA-Factory template of one model, with a lock: the fast
    tokenizer is not safe to call from two threads at once (a prefetch thread encodes while the
    main thread decodes)."""

    def __init__(self, tokenizer: Any, processor: Any, template: Any, context: int | None = None, max_prompt_tokens: int | None = None):
        self.tokenizer, self.processor, self.template = tokenizer, processor, template
        self.context = context  # the model's context length in tokens (its config), when known
        self.max_prompt_tokens = max_prompt_tokens  # longer prompts raise RecordError too_long
        self.tokenizer.padding_side = "left"
        self.lock = threading.Lock()
        self._expansions: dict[tuple[tuple[int, int], ...], list[str]] = {}
        self._stop_tables: dict[tuple[str, ...], list[bool] | None] = {}
        self._heads: dict[tuple[int, ...], str] = {}  # decoded prefixes (continuation), under the lock
        from llamafactory.data.mm_plugin import PLUGINS

        # the template's image plugin by LLaMA-Factory's name for it (llava, qwen2_vl, intern_vl, gemma3, ...)
        self.plugin = next((name for name, cls in PLUGINS.items() if type(self.template.mm_plugin) is cls), "base")

    @classmethod
    def load(cls, model: str, template: str, *, image_max_pixels: int | None = None, trust_remote_code: bool = False, **inputs: Any) -> Renderer:
        """The renderer of ``model`` with the build's ``template``; ``inputs``: the recipe's other keys
        that change what the model sees (``crop_to_patches``, ``image_do_pan_and_scan``, ``enable_thinking``)."""
        from seva_plugin.plugins.backends.loading import infer_args

        model_args, data_args, _ = infer_args(model, template, "float32", image_max_pixels, trust_remote_code, None, inputs)
        return cls.from_args(model_args, data_args)

    @classmethod
    def from_args(cls, model_args: Any, data_args: Any) -> Renderer:
        """From LLaMA-Factory's parsed arguments (``loading.infer_args``)."""
        from llamafactory.data import get_template_and_fix_tokenizer
        from llamafactory.model import load_tokenizer
        from llamafactory.model.loader import load_config

        from seva_plugin.logs import hide_known_noise
        from seva_plugin.plugins.backends.loading import context_length

        hide_known_noise()  # load_tokenizer passes use_fast: transformers' deprecation is no news to our users (logs.py)
        module = load_tokenizer(model_args)
        tokenizer, processor = module["tokenizer"], module["processor"]
        return cls(tokenizer, processor, get_template_and_fix_tokenizer(tokenizer, data_args), context_length(load_config(model_args)))

    # -- tokens ------------------------------------------------------------------------------
    @property
    def stop_token_ids(self) -> list[int]:
        """The template's stop tokens: the only tokens that end an answer (what training appends)."""
        return list(self.template.get_stop_token_ids(self.tokenizer))

    def banned_token_ids(self, model_config: Any) -> list[int]:
        """Special tokens a sampled answer may not contain (stop tokens aside): fed back as a prefix,
        an image placeholder would break the image-token count, a pad or BOS token the text.
        ``model_config``: the model's config (object or config.json dict), for its image and video token ids."""
        tokenizer = self.tokenizer
        banned = set(tokenizer.all_special_ids)
        banned |= {i for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(tok, "special", False)}
        for key in ("image_token_id", "image_token_index", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
            value = model_config.get(key) if isinstance(model_config, dict) else getattr(model_config, key, None)
            if isinstance(value, int):
                banned.add(value)
        return sorted(banned - set(self.stop_token_ids))

    # -- text --------------------------------------------------------------------------------
    def _expand_images(self, images: Sequence[Any]) -> list[str]:
        """The image-token text each image expands to, cached by image size (all it depends on)."""
        key = tuple(img.size for img in images)
        if key not in self._expansions:
            content = SENTINEL.join([IMAGE_TOKEN] * len(images))
            (msg,) = self.template.mm_plugin.process_messages([{"role": "user", "content": content}], images, [], [], self.processor)
            self._expansions[key] = msg["content"].split(SENTINEL)
        return self._expansions[key]

    def image_rows(self, images: Sequence[Any]) -> list[int]:
        """How many rows of ``pixel_values`` each image fills where the tensors do not say so
        (InternVL tiles, Gemma 3 crops; :func:`image_slices`), read off its expanded prompt."""
        return [rows_per_image(self.plugin, e, self.processor) for e in self._expand_images(images)]

    def prompt_ids(self, prompt: str, images: Sequence[Any], system: str | None = None) -> list[int]:
        """Token ids of the rendered user turn (``system``: instead of the template's default, which an
        empty string also gives, as in LLaMA-Factory) plus the assistant header.

        Over ``max_prompt_tokens`` (image tokens included) it raises RecordError ``too_long``: before
        tokenizing when the text alone cannot fit, so a huge prompt costs nothing."""
        limit = self.max_prompt_tokens
        if limit is not None and len(prompt) + len(system or "") > CHARS_PER_TOKEN * limit:
            raise RecordError(f"prompt too long: {len(prompt):,} characters cannot fit in the limit of {limit:,} tokens", "too_long")
        parts = prompt.split(IMAGE_TOKEN)
        expansions = self._expand_images(images)
        content = parts[0] + "".join(e + p for e, p in zip(expansions, parts[1:], strict=True))
        messages = [{"role": "user", "content": content}, {"role": "assistant", "content": ""}]
        with self.lock:
            ids, _ = self.template.encode_oneturn(self.tokenizer, messages, system or None, None)
            ids, _ = self.template.mm_plugin.process_token_ids(ids, None, images, [], [], self.tokenizer, self.processor)
        if limit is not None and len(ids) > limit:
            raise RecordError(f"prompt too long: {len(ids):,} tokens with its image tokens, over the limit of {limit:,}", "too_long")
        return list(ids)

    def render(self, request: Any, images: Sequence[Any] | None = None) -> RenderedPrompt:
        """A ``GenerationRequest``'s or ``ScoreRequest``'s prompt, as training renders it. ``images``:
        the view's images (:meth:`view_images`; their sizes set the image-token count), default the record's."""
        ids = self.prompt_ids(request.user_prompt, request.record.images if images is None else images, request.system)
        with self.lock:
            text = self.tokenizer.decode(ids, skip_special_tokens=False)
        return RenderedPrompt(text, ids)

    def answer_ids(self, text: str) -> list[int]:
        """An answer prefix as training tokenizes a response: on its own, no special tokens."""
        if not text:
            return []
        with self.lock:
            return list(self.tokenizer.encode(text, add_special_tokens=False))

    def score_ids(self, prefix: str, text: str) -> tuple[list[int], list[int]]:
        """``(prefix ids, text ids)`` of a ScoreRequest: the response ``prefix + text`` tokenized as
        training tokenizes it, split after the longest run it shares with the prefix's own ids."""
        whole, head = self.answer_ids(prefix + text), self.answer_ids(prefix)
        shared = 0
        while shared < min(len(whole), len(head)) and whole[shared] == head[shared]:
            shared += 1
        return whole[:shared], whole[shared:]

    def continuation(self, prefix_ids: list[int], new_ids: list[int]) -> str:
        """The text ``new_ids`` add after ``prefix_ids`` (decoded together, so a leading space that a
        tokenizer drops at the start of a text is kept)."""
        with self.lock:
            if not prefix_ids:
                return self._decode(new_ids)
            key = tuple(prefix_ids)
            head = self._heads.get(key)
            if head is None:
                if len(self._heads) >= 4096:  # prefixes of past calls: a build's rows seldom come back
                    self._heads.clear()
                head = self._heads[key] = self._decode(prefix_ids)
            return self._decode(prefix_ids + new_ids)[len(head) :]

    def _decode(self, ids: list[int]) -> str:
        import numpy as np

        # an array: transformers checks a list's items one by one in Python first
        return str(self.tokenizer.decode(np.asarray(ids, dtype=np.int64), skip_special_tokens=True))

    def stop_candidates(self, stops: Sequence[str]) -> list[bool] | None:
        """Per token id, whether the token can complete one of ``stops``; None when any token can
        (a stop with a non-ASCII character, or none). Made once per stop set.

        For stops of ASCII characters only: a new occurrence of a stop holds a character that the
        newest token brought, and an ASCII character is one byte, which decodes to itself wherever it
        stands (the bytes of a multi-byte character never include one). So a token whose text (after
        a plain context, its leading space kept) shares no character with any stop cannot complete
        one, in any context."""
        key = tuple(stops)
        if key not in self._stop_tables:
            table = None
            if key and all(s.isascii() for s in key):
                chars = set("".join(key))
                anchor = self.answer_ids("a")
                with self.lock:
                    head = self.tokenizer.decode(anchor, skip_special_tokens=True)
                    texts = self.tokenizer.batch_decode([anchor + [i] for i in range(len(self.tokenizer))], skip_special_tokens=True)
                table = [not chars.isdisjoint(t[len(head) :]) for t in texts]
            self._stop_tables[key] = table
        return self._stop_tables[key]

    def completion(self, row: list[int], logprobs: list[float] | None, stops: Sequence[str], prefix_ids: list[int]) -> Completion:
        """One generated row read back, the same for every backend: cut at its first stop token (kept in
        ids and log-probs, not in the text; later tokens are padding) or right after its first stop
        string in the new text; else it ended by ``length``."""
        eos = set(self.stop_token_ids)

        def cut(n: int) -> tuple[list[int], list[float] | None]:
            return row[:n], None if logprobs is None else logprobs[:n]

        for n, token in enumerate(row):
            if token in eos:
                return Completion(self.continuation(prefix_ids, row[:n]), "eos", *cut(n + 1))
        text = self.continuation(prefix_ids, row)
        hits = [(text.find(s), s) for s in stops if s in text]
        if hits:
            at, stop = min(hits)
            may_stop = self.stop_candidates(stops)
            for m in range(1, len(row) + 1):  # the token that completed the stop string: one that can
                if may_stop is not None and row[m - 1] < len(may_stop) and not may_stop[row[m - 1]]:
                    continue
                if stop in self.continuation(prefix_ids, row[:m]):
                    return Completion(text[: at + len(stop)], "stop", *cut(m))
        return Completion(text, "length", *cut(len(row)))

    # -- pixels ------------------------------------------------------------------------------
    def mm_inputs(self, images_per_record: Sequence[Sequence[Any]], batch_ids: list[list[int]]) -> dict[str, Any]:
        """The processor's multimodal tensors for a batch, as LLaMA-Factory's collator builds them."""
        flat = [img for imgs in images_per_record for img in imgs]
        n = len(images_per_record)
        counts = [len(i) for i in images_per_record]
        return dict(self.template.mm_plugin.get_mm_inputs(flat, [], [], counts, [0] * n, [0] * n, batch_ids, self.processor))

    @staticmethod
    def view_images(record: LoadedRecord, view: View) -> list[Any]:
        """The images a record is rendered with under ``view``: a pixel-space augmenter's output (image
        ``k`` drawn with ``view_generator(record.seed, view.id, k)``), else the record's own."""
        augmenter = view.augmenter
        if augmenter is None or augmenter.space == "tensor":
            return list(record.images)
        return [augmenter(img, view_generator(record.seed, view.id, k)) for k, img in enumerate(record.images)]

    def view_inputs(
        self, records: Sequence[LoadedRecord], view: View, clean: tuple[list[list[int]], dict[str, Any]] | None = None, prompts: Prompts | None = None
    ) -> tuple[list[list[int]], dict[str, Any]]:
        """Prompt ids and multimodal tensors of ``records`` under ``view``; ``prompts``: per record the
        user turn and system to render (default: the record's prompt, the template's system).

        Tensor-space augmenters noise a copy of the processed clean pixels (``clean``: this method's
        result for the clean view of the same records and prompts, if already made), image ``k`` of a
        record with ``view_generator(record.seed, view.id, k)``; pixel-space augmenters change the
        images before the processor, so the prompt is re-rendered for their sizes."""
        asked = list(prompts) if prompts is not None else [(r.record.prompt, None) for r in records]
        augmenter = view.augmenter
        if augmenter is not None and augmenter.space != "tensor":
            images = [self.view_images(r, view) for r in records]
            ids = [self.prompt_ids(p, imgs, s) for (p, s), imgs in zip(asked, images, strict=True)]
            return ids, self.mm_inputs(images, ids)
        if clean is None:
            ids = [self.prompt_ids(p, r.images, s) for (p, s), r in zip(asked, records, strict=True)]
            clean = ids, self.mm_inputs([r.images for r in records], ids)
        if augmenter is None:
            return clean
        ids, mm = clean
        rows = [n for r in records for n in self.image_rows(r.images)]
        return ids, augment_tensors(mm, augmenter, [(r.seed, len(r.images)) for r in records], view.id, rows)


def token_types(input_ids: Any, model_config: Any) -> Any:
    """1 at image tokens, 2 at video tokens, 0 elsewhere, for a tensor of ids (prompts, prefixes and
    answers alike), as LLaMA-Factory's training collator builds ``token_type_ids`` (Gemma 3) and
    ``mm_token_type_ids`` (the Qwen-VL family). Extend them over a prefix by recomputing them from
    the whole ids: without them transformers 5 silently falls back to text positions for Qwen's
    3-D (M-RoPE) positions, and generation would not match training."""
    import torch

    types = torch.zeros_like(input_ids)
    for value, key in ((1, "image_token_id"), (2, "video_token_id")):
        token = model_config.get(key) if isinstance(model_config, dict) else getattr(model_config, key, None)
        if token is not None:
            types[input_ids == token] = value
    return types

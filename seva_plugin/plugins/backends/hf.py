"""Backend ``hf``: batched ``transformers`` generation, prompts rendered by LLaMA-Factory.

The model, tokenizer, processor and template are loaded by LLaMA-Factory's own loaders, so the
prompt text, image tokens and pixels are exactly those ``llamafactory-cli train`` sees for the
same ``template`` (``rendering.py``). Requests with the same decoding settings go through one
``generate`` call: each view's images are processed once, tensor-space augmenters noise a copy
of the processed pixels, and a request with ``n`` answers contributes ``n`` rows.

Greedy requests without stop strings or log-probabilities run ``generate`` as it is. Anything
else goes through ``hf_decoding``: per-row seeded sampling (so answers never depend on batch
layout), log-probabilities of the unscaled model, and stop strings.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from seva_plugin import hookimpl
from seva_plugin.errors import ConfigError
from seva_plugin.interfaces import CLEAN, Answer, Backend, GenerationRequest, Sampling
from seva_plugin.pipeline.views import sample_seed
from seva_plugin.plugins.backends.batching import PreparedInputs, runs_by_view
from seva_plugin.plugins.backends.pixels import concat_mm
from seva_plugin.plugins.backends.rendering import Renderer, check_max_new_tokens, cut_answer, infer_args, special_ids


@dataclass
class HfBackend(Backend):
    name = "hf"
    model: str  # supplied by the build config
    template: str  # supplied by the build config
    batch_size: int = 8  # records per batch (each request contributes n rows per view)
    max_new_tokens: int = 512  # official SeVa value
    do_sample: bool = False  # official SeVa: greedy
    temperature: float = 1.0
    top_p: float = 1.0
    device: str | None = None  # default: cuda when present, else cpu
    dtype: str = "auto"  # auto: bfloat16 on cuda, float32 on cpu
    image_max_pixels: int | None = None  # LLaMA-Factory's image_max_pixels (keep equal to the recipe's)
    crop_to_patches: bool = False  # LLaMA-Factory's crop_to_patches: InternVL tiles (keep equal to the recipe's)
    image_do_pan_and_scan: bool = False  # LLaMA-Factory's image_do_pan_and_scan: Gemma 3 crops (keep equal to the recipe's)
    enable_thinking: bool = True  # LLaMA-Factory's enable_thinking: a reasoning template's prompt (keep equal to the recipe's)
    adapter: str | None = None  # a LoRA adapter dir to apply on top of the model
    min_new_tokens: int = 0  # >0: never stop before this many new tokens (benchmarks force a fixed length)
    trust_remote_code: bool = False  # run a model folder's own Python (auto_map); off unless asked, as in LLaMA-Factory
    max_prompt_tokens: int | None = None  # longer prompts (image tokens included) are rejected as too_long; default: the model's context less max_new_tokens

    def __post_init__(self):
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ConfigError("backend.batch_size and backend.max_new_tokens must be positive.")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise ConfigError(f"backend.max_prompt_tokens must be a positive number of tokens (or left out), got {self.max_prompt_tokens}.")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ConfigError("backend.min_new_tokens must be between 0 and backend.max_new_tokens.")
        if self.dtype not in ("auto", "float32", "float16", "bfloat16"):
            raise ConfigError(f"backend.dtype must be auto, float32, float16 or bfloat16, got {self.dtype!r}.")
        if self.image_do_pan_and_scan:
            from seva_plugin.families import pan_and_scan_problem

            if problem := pan_and_scan_problem():
                raise ConfigError(f"backend.{problem}")
        self._load_lock = threading.Lock()
        self._prepared = PreparedInputs()

    # -- loading -----------------------------------------------------------------------------
    @cached_property
    def _device_and_dtype(self) -> tuple[str, str]:
        import torch

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        return device, self.dtype if self.dtype != "auto" else ("bfloat16" if device.startswith("cuda") else "float32")

    def _args(self, with_adapter: bool):
        _, dtype = self._device_and_dtype
        inputs = {"crop_to_patches": self.crop_to_patches, "image_do_pan_and_scan": self.image_do_pan_and_scan, "enable_thinking": self.enable_thinking}
        return infer_args(self.model, self.template, dtype, self.image_max_pixels, self.trust_remote_code, self.adapter if with_adapter else None, inputs)

    @property
    def renderer(self) -> Renderer:
        """Tokenizer, processor and template, loaded on first use without the weights (enough for
        ``seva inspect`` to rebuild the views a build fed the model)."""
        with self._load_lock:
            if "_renderer" not in self.__dict__:
                model_args, data_args, _ = self._args(with_adapter=False)
                renderer = Renderer.load(model_args, data_args)
                check_max_new_tokens(self.max_new_tokens, renderer.context, "the model's context (max_position_embeddings in its config.json)")
                renderer.max_prompt_tokens = prompt_budget(self.max_prompt_tokens, renderer.context, self.max_new_tokens)
                self.__dict__["_renderer"] = renderer
        return self.__dict__["_renderer"]

    @property
    def hf_model(self):
        """The model, loaded on first use by LLaMA-Factory's ``load_model`` (adapter applied)."""
        renderer = self.renderer
        with self._load_lock:
            if "_model" not in self.__dict__:
                from llamafactory.model import load_model

                device, _ = self._device_and_dtype
                model_args, _, finetuning_args = self._args(with_adapter=True)
                model_args.device_map = {"": device}
                model = load_model(renderer.tokenizer, model_args, finetuning_args, is_trainable=False)
                self.__dict__["_model"] = model.eval()
        return self.__dict__["_model"]

    def share_weights(self, other: HfBackend) -> None:
        """Use ``other``'s loaded model and renderer (the same model folder), so a benchmark times
        generation without loading the weights again."""
        self.__dict__.update(_renderer=other.renderer, _model=other.hf_model)

    def close(self) -> None:
        self.__dict__.pop("_model", None)

    # -- the contract ------------------------------------------------------------------------
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Answer]:
        answers: list[Answer | None] = [None] * len(requests)
        for indices in _groups(requests, self._decoding):
            group = [requests[i] for i in indices]
            for i, answer in zip(indices, self._generate(group), strict=True):
                answers[i] = answer
        return answers  # type: ignore[return-value]

    def prepare(self, requests: Sequence[GenerationRequest]) -> None:
        """Make ``generate``'s inputs ahead (the build's prefetch thread). Best effort: on any error
        nothing is kept, and ``generate`` recomputes (and raises) itself."""
        if not requests:
            return
        try:
            prompt_ids, prefix_ids, mm = self.model_inputs(requests)
            batch = None
            if "_model" in self.__dict__:  # once loaded (never load it here): the padded tensors too, off the generating thread
                batch = self.batch_inputs([p + q for p, q in zip(prompt_ids, prefix_ids, strict=True)], mm)
        except Exception:  # noqa: BLE001 - generate() will recompute and report it
            return
        self._prepared.put(requests, (prompt_ids, prefix_ids, mm, batch))

    # -- inputs ------------------------------------------------------------------------------
    def model_inputs(self, requests: Sequence[GenerationRequest]) -> tuple[list[list[int]], list[list[int]], dict]:
        """``(prompt ids, prefix ids, multimodal tensors)`` per row: requests in order, each
        repeated ``n`` times. Consecutive requests with the same view are processed together."""
        renderer = self.renderer
        prompt_ids, prefix_ids, mm_parts = [], [], []
        clean: dict[tuple, tuple] = {}  # the clean inputs of a run of records, reused by its tensor views
        for run in runs_by_view(requests):
            records = [r.record for r in run for _ in range(r.n)]
            key = tuple(id(r) for r in records)
            view = run[0].view
            if (view.clean or view.augmenter.space == "tensor") and key not in clean:
                clean[key] = renderer.view_inputs(records, CLEAN)
            ids, mm = renderer.view_inputs(records, view, clean.get(key))
            prompt_ids += ids
            prefix_ids += [renderer.answer_ids(r.prefix) for r in run for _ in range(r.n)]
            mm_parts.append(mm)
        return prompt_ids, prefix_ids, concat_mm(mm_parts)

    def _decoding(self, request: GenerationRequest) -> tuple:
        """What must be equal for two requests to share a ``generate`` call."""
        sampling = request.sampling or (Sampling(self.temperature, self.top_p) if self.do_sample else None)
        return (request.max_new_tokens or self.max_new_tokens, sampling, tuple(request.stop), request.logprobs)

    def batch_inputs(self, ids: list[list[int]], mm: dict) -> dict:
        """Left-padded ids plus multimodal tensors on the model's device and dtype."""
        import torch

        model, tokenizer = self.hf_model, self.renderer.tokenizer
        pad = _pad_id(tokenizer)
        width = max(map(len, ids))
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids])
        attention_mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
        inputs = {"input_ids": input_ids.to(model.device), "attention_mask": attention_mask.to(model.device)}
        for key, value in mm.items():
            if key == "token_type_ids":  # Gemma 3: per-prompt lists; rebuilt for the padded rows (prefixes included) as training's collator pads them
                value = mm_token_types(input_ids, model.config)
            if not isinstance(value, torch.Tensor):
                value = torch.tensor(value)
            if torch.is_floating_point(value):
                value = value.to(model.dtype)
            inputs[key] = value.to(model.device)
        if "mm_token_type_ids" in inspect.signature(model.forward).parameters:
            inputs["mm_token_type_ids"] = mm_token_types(input_ids, model.config).to(model.device)
        return inputs

    # -- generation --------------------------------------------------------------------------
    def _generate(self, group: list[GenerationRequest]) -> list[Answer]:
        import torch

        max_new_tokens, sampling, stops, want_logprobs = self._decoding(group[0])
        if sampling is None and any(r.n > 1 for r in group):
            raise ConfigError("a request for n > 1 answers needs sampling (backend.do_sample or the request's sampling).")
        prompt_ids, prefix_ids, mm, inputs = self._prepared.take(group) or (*self.model_inputs(group), None)
        model, renderer = self.hf_model, self.renderer
        tokenizer = renderer.tokenizer
        eos = renderer.template.get_stop_token_ids(tokenizer)
        if inputs is None:
            inputs = self.batch_inputs([p + q for p, q in zip(prompt_ids, prefix_ids, strict=True)], mm)
        width = inputs["input_ids"].shape[1]
        kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos, pad_token_id=_pad_id(tokenizer))
        if self.min_new_tokens:
            kwargs["min_new_tokens"] = self.min_new_tokens
        picker = None
        if sampling is not None or want_logprobs:
            from transformers import LogitsProcessorList

            seeds = [sample_seed(r.sampling_seed, k) if sampling else None for r in group for k in range(r.n)]
            banned = special_ids(tokenizer, lambda key: getattr(model.config, key, None), eos) if sampling else []
            s = sampling or Sampling()
            picker = token_picker_for(seeds, s, banned, len(tokenizer))
            kwargs.update(logits_processor=LogitsProcessorList([picker]), repetition_penalty=1.0, no_repeat_ngram_size=0)
        if stops:
            from transformers import StoppingCriteriaList

            kwargs["stopping_criteria"] = StoppingCriteriaList([_stop_on_text(stops, renderer, width, prefix_ids)])
        with torch.inference_mode():
            out = model.generate(**inputs, **kwargs)
        new = out[:, width:].tolist()
        logprobs = torch.stack(picker.logprobs, dim=1).tolist() if picker is not None and picker.logprobs else [[] for _ in new]
        results = [cut_answer(row, lp, set(eos), stops, renderer, prefix) for row, lp, prefix in zip(new, logprobs, prefix_ids, strict=True)]
        answers, n = [], 0
        for r in group:
            mine = results[n : n + r.n]
            n += r.n
            texts, reasons, logprobs_, ids = (list(x) for x in zip(*mine, strict=True))
            answers.append(Answer(texts, reasons, logprobs_ if want_logprobs else None, ids if want_logprobs else None))
        return answers


def prompt_budget(setting: int | None, context: int | None, max_new_tokens: int) -> int | None:
    """The longest prompt a backend takes: ``max_prompt_tokens`` when set, else what leaves room in
    the model's context for ``max_new_tokens`` (``rendering.check_max_new_tokens`` made sure some is left)."""
    if setting is not None:
        return setting
    if context is None:
        return None
    return context - max_new_tokens


def token_picker_for(seeds, sampling: Sampling, banned, vocab_limit):
    from seva_plugin.plugins.backends.hf_decoding import token_picker

    return token_picker(seeds, sampling.temperature, sampling.top_p, banned, vocab_limit)


def _stop_on_text(stops, renderer: Renderer, width: int, prefix_ids):
    from seva_plugin.plugins.backends.hf_decoding import stop_on_text

    return stop_on_text(stops, renderer.continuation, width, prefix_ids)


def _groups(requests: Sequence[GenerationRequest], decoding) -> list[list[int]]:
    """Indices of requests grouped by decoding settings, in order of first appearance."""
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(requests):
        groups.setdefault(decoding(r), []).append(i)
    return list(groups.values())


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def mm_token_types(input_ids, config):
    """1 at image tokens, 2 at video tokens, as LLaMA-Factory's training collator builds them.

    Qwen2-VL-style models need them for their 3-D (M-RoPE) positions; without them transformers 5
    silently falls back to text positions, and generation would not match training.
    """
    import torch

    types = torch.zeros_like(input_ids)
    for value, key in ((1, "image_token_id"), (2, "video_token_id")):
        token = getattr(config, key, None)
        if token is not None:
            types[input_ids == token] = value
    return types


@hookimpl
def register_backends(register):
    register(HfBackend)

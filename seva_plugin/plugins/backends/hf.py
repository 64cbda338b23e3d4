"""Backend ``hf``: batched ``transformers`` generation and scoring, prompts rendered by LLaMA-Factory.

The model, tokenizer, processor and template are loaded by LLaMA-Factory's own loaders, so the
prompt text, image tokens and pixels are exactly those ``llamafactory-cli train`` sees for the
same ``template`` (``seva_plugin.rendering``). Requests with the same decoding settings go through
one ``generate`` call: each view's images are processed once, tensor-space augmenters noise a copy
of the processed pixels, and a request with ``n`` answers contributes ``n`` rows. ``score`` is one
teacher-forced forward pass per call.

Decoding follows a generation config built here, never the checkpoint's: the model's
``generation_config`` is reset at load (``generate`` fills every unset field from it). Greedy
requests without stop strings or log-probabilities run ``generate`` as it is; anything else goes
through ``hf_decoding``: per-row seeded sampling (so answers never depend on batch layout),
log-probabilities of the unscaled model, and stop strings.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

from seva_plugin import hookimpl
from seva_plugin.contract import Answer, GenerationRequest, Sampling, ScoreRequest, Scores, check_sampling
from seva_plugin.errors import ConfigError
from seva_plugin.interfaces import Backend
from seva_plugin.pipeline.views import sample_seed
from seva_plugin.plugins.backends import hf_inputs, hf_prompt_cache
from seva_plugin.plugins.backends.batching import PreparedInputs
from seva_plugin.plugins.backends.loading import check_max_new_tokens, config_context, config_json, infer_args, load_model_in
from seva_plugin.rendering import Renderer


@dataclass
class HfBackend(Backend):
    name = "hf"
    model: str  # supplied by the build config
    template: str  # supplied by the build config
    batch_size: int = 8  # records per batch (each request contributes n rows per view)
    max_new_tokens: int = 512  # official SeVa value
    do_sample: bool = False  # official SeVa: greedy
    temperature: float = 1.0  # 0: greedy
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
    # hf_prompt_cache: one prefill per request for its n answers, KV room kept for the new tokens; False: generate's own cache
    share_prompt_cache: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ConfigError("backend.batch_size and backend.max_new_tokens must be positive.")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise ConfigError(f"backend.max_prompt_tokens must be a positive number of tokens (or left out), got {self.max_prompt_tokens}.")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ConfigError("backend.min_new_tokens must be between 0 and backend.max_new_tokens.")
        if self.dtype not in ("auto", "float32", "float16", "bfloat16"):
            raise ConfigError(f"backend.dtype must be auto, float32, float16 or bfloat16, got {self.dtype!r}.")
        check_sampling(self.temperature, self.top_p, "backend")
        check_max_new_tokens(self.max_new_tokens, config_context(config_json(self.model)), self.model)
        if self.image_do_pan_and_scan:
            from seva_plugin.families import pan_and_scan_problem

            if problem := pan_and_scan_problem():
                raise ConfigError(f"backend.{problem}")
        self.default_sampling = Sampling(self.temperature, self.top_p) if self.do_sample else None
        self._load_lock = threading.Lock()
        self._prepared = PreparedInputs()

    # -- loading -----------------------------------------------------------------------------
    @cached_property
    def _device_and_dtype(self) -> tuple[str, str]:
        import torch

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        return device, self.dtype if self.dtype != "auto" else ("bfloat16" if device.startswith("cuda") else "float32")

    def _args(self, with_adapter: bool) -> tuple[Any, Any, Any]:
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
                loaded = Renderer.from_args(model_args, data_args)
                loaded.max_prompt_tokens = hf_inputs.prompt_budget(self.max_prompt_tokens, loaded.context, self.max_new_tokens)
                self.__dict__["_renderer"] = loaded
        renderer: Renderer = self.__dict__["_renderer"]
        return renderer

    @property
    def hf_model(self) -> Any:
        """The model, loaded on first use by LLaMA-Factory's ``load_model`` (adapter applied) in the
        backend's dtype (not the checkpoint's: ``loading.load_model_in``), its generation config reset
        to transformers' defaults."""
        renderer = self.renderer
        with self._load_lock:
            if "_model" not in self.__dict__:
                from transformers import GenerationConfig

                device, dtype = self._device_and_dtype
                model_args, _, finetuning_args = self._args(with_adapter=True)
                model_args.device_map = {"": device}
                model = load_model_in(dtype, renderer.tokenizer, model_args, finetuning_args).eval()
                for part in {id(m): m for m in (model, getattr(model, "get_base_model", lambda: model)())}.values():
                    part.generation_config = GenerationConfig()  # nothing from generation_config.json shapes decoding
                self.__dict__["_model"] = model
        return self.__dict__["_model"]

    def share_weights(self, other: HfBackend) -> None:
        """Use ``other``'s loaded model and renderer (the same model folder), so a benchmark times
        generation without loading the weights again."""
        self.__dict__.update(_renderer=other.renderer, _model=other.hf_model)

    def describe(self) -> dict[str, Any]:
        from seva_plugin.pipeline.manifest import package_version

        device, dtype = self._device_and_dtype
        return {"name": self.name, "engine": "transformers", "version": package_version("transformers"), "dtype": dtype, "device": device_kind(device)}

    def close(self) -> None:
        self.__dict__.pop("_model", None)

    # -- the contract ------------------------------------------------------------------------
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Answer]:
        answers: list[Answer] = [[] for _ in requests]
        for indices in hf_inputs.groups(requests, self._decoding):
            group = [requests[i] for i in indices]
            for i, answer in zip(indices, self._generate(group), strict=True):
                answers[i] = answer
        return answers

    def score(self, requests: Sequence[ScoreRequest]) -> list[Scores]:
        if not requests:
            return []
        renderer = self.renderer
        split = [renderer.score_ids(r.prefix, r.text) for r in requests]
        source = hf_inputs.shared_heads(requests, split)
        rows = [i for i, s in enumerate(source) if s == i]  # the requests that get a row of their own
        prompt_ids, mm = hf_inputs.rendered(renderer, [requests[i] for i in rows], lambda r: 1)
        heads = [p + split[i][0] for p, i in zip(prompt_ids, rows, strict=True)]
        texts = [split[i][1] for i in rows]
        also: list[list[int]] = [[] for _ in rows]  # the one-token texts read from another request's row
        row = {i: k for k, i in enumerate(rows)}
        for i, s in enumerate(source):
            if s != i:
                also[row[s]].append(split[i][1][0])
        logprobs, first = hf_inputs.teacher_forced(self.hf_model, renderer.tokenizer, heads, texts, mm, also)
        out = []
        for i, (s, (_, text)) in enumerate(zip(source, split, strict=True)):
            out.append(Scores(text, logprobs[row[i]] if s == i else [first[row[s]][text[0]]]))
        return out

    def prepare(self, requests: Sequence[GenerationRequest]) -> None:
        """Make ``generate``'s inputs ahead (the build's prefetch thread). Best effort: on any error
        nothing is kept, and ``generate`` recomputes (and raises) itself."""
        if not requests:
            return
        try:
            prompt_ids, prefix_ids, mm = self.model_inputs(requests, unique=self._shares_prefill(requests))
            batch = None
            if "_model" in self.__dict__:  # once loaded (never load it here): the padded tensors too, off the generating thread
                batch = self.batch_inputs([p + q for p, q in zip(prompt_ids, prefix_ids, strict=True)], mm)
        except Exception:  # noqa: BLE001 - generate() will recompute and report it
            return
        self._prepared.put(requests, (prompt_ids, prefix_ids, mm, batch))

    # -- inputs ------------------------------------------------------------------------------
    def model_inputs(self, requests: Sequence[GenerationRequest], unique: bool = False) -> tuple[list[list[int]], list[list[int]], dict[str, Any]]:
        """``(prompt ids, prefix ids, multimodal tensors)`` per row: requests in order, each
        repeated ``n`` times (``unique``: once)."""
        renderer = self.renderer
        copies = (lambda r: 1) if unique else (lambda r: r.n)
        prompt_ids, mm = hf_inputs.rendered(renderer, requests, copies)
        return prompt_ids, [renderer.answer_ids(r.prefix) for r in requests for _ in range(copies(r))], mm

    def batch_inputs(self, ids: list[list[int]], mm: dict[str, Any]) -> dict[str, Any]:
        """Left-padded ids plus multimodal tensors on the model's device and dtype."""
        return hf_inputs.batch_inputs(self.hf_model, self.renderer.tokenizer, ids, mm)

    def _shares_prefill(self, requests: Sequence[GenerationRequest]) -> bool:
        """Whether these requests' rows start from one prefill per request (``hf_prompt_cache``)."""
        return self.share_prompt_cache and hf_prompt_cache.applies(self._model_type, [r.n for r in requests])

    @cached_property
    def _model_type(self) -> str | None:
        return (config_json(self.model) or {}).get("model_type")

    def _decoding(self, request: GenerationRequest) -> tuple[int, Sampling | None, tuple[str, ...], bool]:
        """What must be equal for two requests to share a ``generate`` call."""
        return (request.max_new_tokens or self.max_new_tokens, request.resolve_sampling(self.default_sampling), request.stop, request.logprobs)

    # -- generation --------------------------------------------------------------------------
    def _generate(self, group: list[GenerationRequest]) -> list[Answer]:
        import torch
        from transformers import GenerationConfig

        max_new_tokens, sampling, stops, want_logprobs = self._decoding(group[0])
        shared = self._shares_prefill(group)
        prompt_ids, prefix_ids, mm, inputs = self._prepared.take(group) or (*self.model_inputs(group, unique=shared), None)
        model, renderer = self.hf_model, self.renderer
        tokenizer, eos = renderer.tokenizer, renderer.stop_token_ids
        if inputs is None:
            inputs = self.batch_inputs([p + q for p, q in zip(prompt_ids, prefix_ids, strict=True)], mm)
        kwargs: dict[str, Any] = {}
        if shared:  # one row per request so far: prefill those, then repeat rows and cache for the n answers
            answers = [r.n for r in group]
            inputs, kwargs["past_key_values"] = hf_prompt_cache.prefilled(model, inputs, answers, max_new_tokens)
            prefix_ids = [q for q, n in zip(prefix_ids, answers, strict=True) for _ in range(n)]
        elif self.share_prompt_cache:
            kwargs["past_key_values"] = hf_prompt_cache.reserved(model, max_new_tokens)
        width = inputs["input_ids"].shape[1]
        config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos, pad_token_id=hf_inputs.pad_id(tokenizer))
        if self.min_new_tokens:
            config.min_new_tokens = self.min_new_tokens
        picker = None
        if sampling is not None or want_logprobs:
            from transformers import LogitsProcessorList

            from seva_plugin.plugins.backends.hf_decoding import token_picker

            seeds = [sample_seed(r.sampling_seed, k) if sampling else None for r in group for k in range(r.n)]
            banned = renderer.banned_token_ids(model.config) if sampling else []
            s = sampling or Sampling()
            picker = token_picker(seeds, s.temperature, s.top_p, banned, len(tokenizer))
            kwargs["logits_processor"] = LogitsProcessorList([picker])
        if stops:
            from transformers import StoppingCriteriaList

            from seva_plugin.plugins.backends.hf_decoding import stop_on_text

            stop = stop_on_text(stops, renderer.continuation, width, prefix_ids, renderer.stop_candidates(stops), eos)
            kwargs["stopping_criteria"] = StoppingCriteriaList([stop])
        with torch.inference_mode():
            out = model.generate(**inputs, generation_config=config, **kwargs)
        new = out[:, width:].tolist()
        logprobs: list[list[float] | None] = [None] * len(new)
        if want_logprobs and picker is not None:
            logprobs = torch.stack(picker.logprobs, dim=1).tolist() if picker.logprobs else [[] for _ in new]
        rows = iter(renderer.completion(row, lp, stops, prefix) for row, lp, prefix in zip(new, logprobs, prefix_ids, strict=True))
        return [[next(rows) for _ in range(r.n)] for r in group]


def device_kind(device: str) -> str:
    """``cpu``, or ``cuda`` with the GPU's name (what the manifest records of the hardware)."""
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            index = torch.device(device).index or 0
            return f"cuda ({torch.cuda.get_device_name(index)})"
    return device


@hookimpl
def register_backends(register: Any) -> None:
    register(HfBackend)

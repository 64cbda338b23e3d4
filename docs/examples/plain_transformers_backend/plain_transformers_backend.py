"""Backend ``plain_transformers``: the generation contract served with plain ``transformers``.

A starting point for your own backend (see docs/plugins.md). It loads the model with
``AutoModelForImageTextToText`` and generates with ``model.generate``; what the model is shown comes
from ``seva_plugin.rendering``: the prompt as the build's ``template`` renders it for training (with
a request's own ``prompt`` or ``system`` when it has one), the processor's tensors as training's
collator builds them, each image's rows of ``pixel_values`` for tensor-space augmenters, and the
token-type ids over the whole input. It serves everything the contract asks: views, answer
prefixes, ``n`` seeded samples, stop strings, log-probs and scoring.

Simplicity over speed: one answer at a time, one ``generate`` call each, no batching, no
prefetching (``prepare`` is left as the base class's no-op). A faster backend batches rows, but
must keep one seeded generator per answer, so answers never depend on how rows were batched.
``seva_plugin.testing.BackendContract`` checks a backend against every rule of the contract.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from seva_plugin import (
    Answer,
    Backend,
    Completion,
    ConfigError,
    GenerationRequest,
    Sampling,
    ScoreRequest,
    Scores,
    check_sampling,
    hookimpl,
    sample_seed,
    view_generator,
)
from seva_plugin.rendering import Renderer, image_slices, token_types


@dataclass
class PlainTransformersBackend(Backend):
    name = "plain_transformers"
    model: str  # supplied by the build config
    template: str  # supplied by the build config: prompts are rendered as training renders them
    batch_size: int = 8  # records the build hands the strategy at once
    max_new_tokens: int = 512  # when a request does not say
    do_sample: bool = False  # when a request does not say: greedy
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    image_max_pixels: int | None = None  # as in the training recipe
    device: str = "cpu"  # "cuda", "cuda:1", ...
    dtype: str = "float32"  # "bfloat16" on a GPU

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"backend.max_new_tokens must be at least 1, got {self.max_new_tokens}.")
        check_sampling(self.temperature, self.top_p, "backend")  # the contract's one rule, with the key in the message
        self.default_sampling = Sampling(self.temperature, self.top_p) if self.do_sample else None

    @cached_property
    def renderer(self) -> Renderer:  # tokenizer, processor and template: no weights
        return Renderer.load(self.model, self.template, image_max_pixels=self.image_max_pixels)

    @cached_property
    def hf_model(self) -> Any:  # loaded on first use: `seva plugins` and config checks stay instant
        from transformers import AutoModelForImageTextToText, GenerationConfig

        model = AutoModelForImageTextToText.from_pretrained(self.model, dtype=self.dtype).to(self.device).eval()
        model.generation_config = GenerationConfig()  # generate() fills unset settings from it: nothing from generation_config.json
        return model

    def close(self) -> None:
        self.__dict__.pop("hf_model", None)

    def describe(self) -> dict[str, Any]:
        import transformers

        return {"name": self.name, "engine": "transformers", "version": transformers.__version__, "dtype": self.dtype, "device": self.device}

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Answer]:
        return [self._answer(r) for r in requests]

    def score(self, requests: Sequence[ScoreRequest]) -> list[Scores]:
        return [self._score(r) for r in requests]

    # -- one request -------------------------------------------------------------------------
    def _answer(self, request: GenerationRequest) -> Answer:
        sampling = request.resolve_sampling(self.default_sampling)  # None: greedy; n > 1 greedily is refused
        inputs, prefix_ids = self._inputs(request, request.prefix)
        return [self._decode(request, inputs, prefix_ids, sampling, k) for k in range(request.n)]

    def _inputs(self, request: GenerationRequest | ScoreRequest, answer: str, extra: Sequence[int] = ()) -> tuple[dict[str, Any], list[int]]:
        """Model inputs of the request's prompt under its view, then ``answer`` (a prefix) and ``extra``
        ids; and the answer's ids."""
        import torch

        r, record, view = self.renderer, request.record, request.view
        images = r.view_images(record, view)  # a pixel-space augmenter's output, image k seeded by (record.seed, view.id, k)
        prompt = r.render(request, images)  # the template's ids for the request's prompt and system
        mm = r.mm_inputs([images], [prompt.ids])  # the processor's tensors, as training's collator builds them
        if view.augmenter is not None and view.augmenter.space == "tensor":  # each image's rows of pixel_values
            pixels = mm["pixel_values"].clone()
            for k, rows in enumerate(image_slices(mm, r.image_rows(images))):
                pixels[rows] = view.augmenter(pixels[rows], view_generator(record.seed, view.id, k))
            mm["pixel_values"] = pixels
        answer_ids = r.answer_ids(answer)  # as training tokenizes a response
        model = self.hf_model
        input_ids = torch.tensor([prompt.ids + answer_ids + list(extra)])
        inputs = {**mm, "input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
        if "token_type_ids" in mm:  # Gemma 3: over the whole ids, the answer's included
            inputs["token_type_ids"] = token_types(input_ids, model.config)
        if "mm_token_type_ids" in inspect.signature(model.forward).parameters:  # the Qwen-VL family's 3-D positions
            inputs["mm_token_type_ids"] = token_types(input_ids, model.config)
        moved = {}
        for key, value in inputs.items():
            value = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            moved[key] = value.to(model.device, model.dtype) if value.is_floating_point() else value.to(model.device)
        return moved, answer_ids

    def _decode(self, request: GenerationRequest, inputs: dict[str, Any], prefix_ids: list[int], sampling: Sampling | None, k: int) -> Completion:
        """Answer ``k``, read back by the rule every backend shares (``Renderer.completion``)."""
        import torch
        from transformers import GenerationConfig

        r, model = self.renderer, self.hf_model
        stop_ids = r.stop_token_ids  # only the template's stop tokens end an answer
        width = inputs["input_ids"].shape[1]
        config = GenerationConfig(
            max_new_tokens=request.max_new_tokens or self.max_new_tokens,
            do_sample=False,  # greedy over what `sampler` leaves: its one drawn token
            eos_token_id=stop_ids,
            pad_token_id=stop_ids[0],
            output_logits=True,  # the raw logits: log-probs under the unscaled model
            return_dict_in_generate=True,
        )
        kwargs: dict[str, Any] = {}
        if sampling is not None:  # this answer's own generator: the same answer however requests are batched
            generator = torch.Generator().manual_seed(sample_seed(request.sampling_seed, k))
            kwargs["logits_processor"] = [sampler(sampling, generator, r.banned_token_ids(model.config), len(r.tokenizer))]
        if request.stop:

            def stopped(ids: Any, scores: Any, **_: Any) -> Any:  # a stopping criterion: the new text holds a stop string
                text = r.continuation(prefix_ids, ids[0, width:].tolist())
                return torch.tensor([any(s in text for s in request.stop)], device=ids.device)

            kwargs["stopping_criteria"] = [stopped]
        with torch.inference_mode():
            out = model.generate(**inputs, generation_config=config, **kwargs)
        new = out.sequences[0, width:].tolist()
        logprobs = [torch.log_softmax(step[0].float(), dim=-1)[t].item() for step, t in zip(out.logits, new, strict=True)]
        return r.completion(new, logprobs if request.logprobs else None, request.stop, prefix_ids)

    def _score(self, request: ScoreRequest) -> Scores:
        """Teacher forcing: the text's tokens after the prompt and prefix, in one forward pass."""
        import torch

        prefix_ids, text_ids = self.renderer.score_ids(request.prefix, request.text)
        inputs, _ = self._inputs(request, "", prefix_ids + text_ids)
        with torch.inference_mode():
            logits = self.hf_model(**inputs).logits[0].float()
        start = inputs["input_ids"].shape[1] - len(text_ids)
        logprobs = [torch.log_softmax(logits[start - 1 + j], dim=-1)[t].item() for j, t in enumerate(text_ids)]
        return Scores(text_ids, logprobs)


def sampler(sampling: Sampling, generator: Any, banned: list[int], vocab_size: int) -> Any:
    """A logits processor that draws the next token from the temperature- and nucleus-scaled
    distribution with ``generator`` (never a special token, nor an embedding row with no token
    behind it) and leaves only that token for greedy ``generate`` to pick."""
    import torch

    def pick(input_ids: Any, scores: Any) -> Any:
        z = torch.log_softmax(scores[0].float(), dim=-1) / sampling.temperature
        z[banned] = float("-inf")
        z[vocab_size:] = float("-inf")
        probs, order = torch.softmax(z, dim=-1).sort(descending=True)
        if sampling.top_p < 1.0:
            probs[(probs.cumsum(0) - probs) > sampling.top_p] = 0.0  # nucleus; the top token always stays
        token = order[torch.multinomial(probs.cpu(), 1, generator=generator).to(order.device)]
        return torch.full_like(scores, float("-inf")).index_fill_(1, token, 0.0)

    return pick


@hookimpl
def register_backends(register: Any) -> None:
    register(PlainTransformersBackend)

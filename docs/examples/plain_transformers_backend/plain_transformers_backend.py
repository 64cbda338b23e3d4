"""Backend ``plain_transformers``: the generation contract served with plain ``transformers``.

A starting point for your own backend (see docs/plugins.md). It loads the model with
``AutoProcessor`` and ``AutoModelForImageTextToText``, renders the prompt itself (no
LLaMA-Factory), and serves everything ``seva`` and ``csr`` ask: views made by pixel- or
tensor-space augmenters, answer prefixes, ``n`` seeded samples, stop strings and log-probs.

Simplicity over speed: one answer at a time, one ``generate`` call each, no batching, no
prefetching (``prepare`` is left as the base class's no-op). A faster backend batches rows, but
must keep one seeded generator per answer, so answers never depend on how rows were batched.

The prompt is built here, not by LLaMA-Factory's template: train with a recipe whose template
renders the same text, or the model learns from prompts it never sees at generation time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from seva_plugin import Answer, Backend, GenerationRequest, Sampling, hookimpl
from seva_plugin.errors import ConfigError
from seva_plugin.pipeline.views import sample_seed, view_generator

LLAVA_15 = "USER: <image>\n{question} ASSISTANT:"


@dataclass
class PlainTransformersBackend(Backend):
    name = "plain_transformers"
    model: str  # supplied by the build config (``template`` is not taken: the prompt is rendered here)
    batch_size: int = 8  # records the build hands the strategy at once
    max_new_tokens: int = 512  # when a request does not say
    do_sample: bool = False  # when a request does not say: greedy
    temperature: float = 1.0
    top_p: float = 1.0
    prompt_format: str | None = None  # None: the processor's chat template, else LLAVA_15; "{prompt}" keeps the <image> markers
    device: str = "cpu"  # "cuda", "cuda:1", ...
    dtype: str = "float32"  # "bfloat16" on a GPU

    def __post_init__(self):
        if self.max_new_tokens < 1 or not self.temperature > 0 or not 0 < self.top_p <= 1:
            raise ConfigError("backend: max_new_tokens >= 1, temperature > 0 and 0 < top_p <= 1, please.")

    @cached_property
    def processor(self):
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(self.model)

    @cached_property
    def hf_model(self):  # loaded on first use: `seva plugins` and config checks stay instant
        from transformers import AutoModelForImageTextToText

        return AutoModelForImageTextToText.from_pretrained(self.model, dtype=self.dtype).to(self.device).eval()

    def close(self) -> None:
        self.__dict__.pop("hf_model", None)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Answer]:
        return [self._answer(r) for r in requests]

    # -- one request -------------------------------------------------------------------------
    def _answer(self, request: GenerationRequest) -> Answer:
        sampling = request.sampling or (Sampling(self.temperature, self.top_p) if self.do_sample else None)
        if sampling is None and request.n > 1:
            raise ConfigError("plain_transformers: n > 1 answers need sampling (do_sample: true, or the request's sampling).")
        inputs, prefix_ids = self._inputs(request)
        rows = [self._decode(request, inputs, prefix_ids, sampling, k) for k in range(request.n)]
        texts, reasons, logprobs, token_ids = (list(x) for x in zip(*rows, strict=True))
        return Answer(texts, reasons, logprobs if request.logprobs else None, token_ids if request.logprobs else None)

    def _prompt(self, record) -> str:
        """The user turn plus the assistant header, as text with one ``<image>`` per image."""
        if self.prompt_format is None and getattr(self.processor, "chat_template", None):
            content = []  # the record's prompt is in LLaMA-Factory form: one <image> marker per image
            for i, part in enumerate(record.prompt.split("<image>")):
                content += ([{"type": "image"}] if i else []) + ([{"type": "text", "text": part}] if part else [])
            return self.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
        return (self.prompt_format or LLAVA_15).format(question=record.question, prompt=record.prompt)

    def _inputs(self, request: GenerationRequest):
        """Model inputs of the prompt under the request's view, and the prefix's token ids."""
        import torch

        loaded, view = request.record, request.view
        augmenter, images = view.augmenter, list(loaded.images)
        if augmenter is not None and augmenter.space == "pixel":  # the PIL image, before the processor
            images = [augmenter(img, view_generator(loaded.seed, view.id, k)) for k, img in enumerate(images)]
        inputs = dict(self.processor(images=images, text=self._prompt(loaded.record), return_tensors="pt"))
        if augmenter is not None and augmenter.space == "tensor":  # each image's slice of pixel_values
            pixels = inputs["pixel_values"].clone()
            for k, rows in enumerate(image_slices(inputs, len(images))):
                pixels[rows] = augmenter(pixels[rows], view_generator(loaded.seed, view.id, k))
            inputs["pixel_values"] = pixels
        prefix_ids = self.processor.tokenizer.encode(request.prefix, add_special_tokens=False) if request.prefix else []
        prefix = torch.tensor([prefix_ids], dtype=torch.long)
        grow = {
            "input_ids": prefix,
            "attention_mask": torch.ones_like(prefix),
            "token_type_ids": torch.zeros_like(prefix),
            "mm_token_type_ids": torch.zeros_like(prefix),
        }
        for key, extra in grow.items():  # per-token inputs go on over the prefix
            if key in inputs:
                inputs[key] = torch.cat([inputs[key], extra.to(inputs[key].dtype)], dim=1)
        model = self.hf_model
        return {k: v.to(model.device, model.dtype) if v.is_floating_point() else v.to(model.device) for k, v in inputs.items()}, prefix_ids

    def _decode(self, request: GenerationRequest, inputs: dict, prefix_ids: list[int], sampling: Sampling | None, k: int):
        """Answer ``k``: ``(text, finish reason, log-probs, token ids)``."""
        import torch

        tokenizer, model = self.processor.tokenizer, self.hf_model
        eos = model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [tokenizer.eos_token_id])
        width = inputs["input_ids"].shape[1]
        kwargs = {}
        if sampling is not None:  # this answer's own generator: the same answer however requests are batched
            generator = torch.Generator().manual_seed(sample_seed(request.sampling_seed, k))
            kwargs["logits_processor"] = [sampler(sampling, generator, len(tokenizer))]
        if request.stop:

            def stopped(ids, scores, **_):  # a stopping criterion: the new text holds a stop string
                text = self._text(prefix_ids, ids[0, width:].tolist())
                return torch.tensor([any(s in text for s in request.stop)], device=ids.device)

            kwargs["stopping_criteria"] = [stopped]
        with torch.inference_mode():
            out = model.generate(
                **inputs,
                max_new_tokens=request.max_new_tokens or self.max_new_tokens,
                do_sample=False,  # greedy over what `sampler` leaves: its one drawn token
                repetition_penalty=1.0,  # the model's generation_config.json fills what is not given here
                no_repeat_ngram_size=0,
                eos_token_id=eos,
                pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0],
                output_logits=True,  # the raw logits: log-probs under the unscaled model
                return_dict_in_generate=True,
                **kwargs,
            )
        new = out.sequences[0, width:].tolist()
        logprobs = [torch.log_softmax(step[0].float(), dim=-1)[t].item() for step, t in zip(out.logits, new, strict=True)]
        if new and new[-1] in eos:  # the model ended the answer: the token is reported, not in the text
            return self._text(prefix_ids, new[:-1]), "eos", logprobs, new
        text = self._text(prefix_ids, new)
        hits = [(text.find(s), s) for s in request.stop if s in text]
        if hits:  # the answer ends right after the first stop string, which stays in the text
            at, stop = min(hits)
            return text[: at + len(stop)], "stop", logprobs, new
        return text, "length", logprobs, new

    def _text(self, prefix_ids: list[int], new_ids: list[int]) -> str:
        """What ``new_ids`` add after the prefix (decoded together: a leading space is kept)."""
        tokenizer = self.processor.tokenizer
        head = tokenizer.decode(prefix_ids, skip_special_tokens=True)
        return tokenizer.decode(prefix_ids + new_ids, skip_special_tokens=True)[len(head) :]


def sampler(sampling: Sampling, generator, vocab_size: int):
    """A logits processor that draws the next token from the temperature- and nucleus-scaled
    distribution with ``generator`` and leaves only that token for greedy ``generate`` to pick."""
    import torch

    def pick(input_ids, scores):
        z = torch.log_softmax(scores[0].float(), dim=-1) / sampling.temperature
        z[vocab_size:] = float("-inf")  # embedding rows with no token behind them
        probs, order = torch.softmax(z, dim=-1).sort(descending=True)
        if sampling.top_p < 1.0:
            probs[(probs.cumsum(0) - probs) > sampling.top_p] = 0.0  # nucleus; the top token always stays
        token = order[torch.multinomial(probs.cpu(), 1, generator=generator).to(order.device)]
        return torch.full_like(scores, float("-inf")).index_fill_(1, token, 0.0)

    return pick


def image_slices(inputs: dict, n_images: int) -> list[slice]:
    """Each image's rows of ``pixel_values``: Qwen-VL's patch runs (``image_grid_thw``), else equal shares."""
    if "image_grid_thw" in inputs:
        counts = [int(c) for c in inputs["image_grid_thw"].prod(-1)]
    else:
        counts = [len(inputs["pixel_values"]) // n_images] * n_images
    starts = [sum(counts[:i]) for i in range(len(counts))]
    return [slice(s, s + c) for s, c in zip(starts, counts, strict=True)]


@hookimpl
def register_backends(register):
    register(PlainTransformersBackend)

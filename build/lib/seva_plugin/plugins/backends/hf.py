"""Backend ``hf``: batched generation with transformers, prompts rendered by LLaMA-Factory.

The model, tokenizer, processor and template are loaded by LLaMA-Factory's own loaders, so the
prompt text and image tokens are exactly those ``llamafactory-cli train`` will see for the same
``template``. A batch is processed once; tensor-space augmenters noise a copy of the processed
pixels, and every view of every record goes through one ``generate`` call.

The build pipeline calls ``prepare(records, views)`` from its prefetch thread, so prompt encoding,
image processing and augmentation of the next batch overlap the current batch's ``generate``;
``generate`` then finds the batch ready (the same values it would compute itself).
"""

from __future__ import annotations

import inspect
import os
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, NamedTuple

from seva_plugin import hookimpl
from seva_plugin.errors import ConfigError
from seva_plugin.build.records import IMAGE_TOKEN, LoadedRecord

SENTINEL = "\x00"


class Loaded(NamedTuple):
    model: Any
    tokenizer: Any
    processor: Any
    template: Any  # llamafactory.data.Template


class _load_once:  # lower case: used as a decorator, like functools.cached_property
    """``functools.cached_property`` that computes at most once when two threads ask at once.

    The value lives in the instance ``__dict__`` under the property's name, as with
    ``cached_property``, so a caller can pre-fill it (``seva inspect`` fills it without a model).
    """

    def __init__(self, func):
        self.func = func
        self.__doc__ = func.__doc__

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        with instance._load_lock:  # only reached while the value is not in __dict__ yet
            if self.name not in instance.__dict__:
                instance.__dict__[self.name] = self.func(instance)
        return instance.__dict__[self.name]


@dataclass
class HfBackend:
    name = "hf"
    model: str  # supplied by the build config
    template: str  # supplied by the build config
    batch_size: int = 8  # records per generate call (each contributes one sequence per view)
    max_new_tokens: int = 512  # official SeVa value
    do_sample: bool = False  # official SeVa: greedy
    temperature: float = 1.0
    top_p: float = 1.0
    device: str | None = None  # default: cuda when present, else cpu
    dtype: str = "auto"  # auto: bfloat16 on cuda, float32 on cpu
    image_max_pixels: int | None = None  # LLaMA-Factory's image_max_pixels (keep equal to the recipe's)
    adapter: str | None = None  # a LoRA adapter dir to apply on top of the model
    min_new_tokens: int = 0  # >0: never stop before this many new tokens (benchmarks force a fixed length)

    def __post_init__(self):
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ConfigError("backend.batch_size and backend.max_new_tokens must be positive.")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ConfigError("backend.min_new_tokens must be between 0 and backend.max_new_tokens.")
        if self.dtype not in ("auto", "float32", "float16", "bfloat16"):
            raise ConfigError(f"backend.dtype must be auto, float32, float16 or bfloat16, got {self.dtype!r}.")
        self._expansions: dict = {}
        self._load_lock = threading.Lock()
        # The fast tokenizer is not safe to call from two threads at once (its Rust side can
        # raise "Already borrowed"); prompt encoding (prefetch thread) and decoding share this lock.
        self._tokenizer_lock = threading.Lock()
        self._prepared: deque = deque()  # (records, views, (ids, mm)) made ahead by ``prepare``
        self._prepared_lock = threading.Lock()

    # -- loading -----------------------------------------------------------------------------
    @_load_once
    def loaded(self) -> Loaded:
        """(model, tokenizer, processor, template), loaded on first use by LLaMA-Factory's loaders."""
        return self._load()

    def _load(self, with_model: bool = True) -> Loaded:
        """Load with LLaMA-Factory's loaders (``with_model=False``: everything but the weights)."""
        os.environ.setdefault("LLAMAFACTORY_VERBOSITY", "WARN")  # keep the progress bar readable
        import torch
        from llamafactory.data import get_template_and_fix_tokenizer
        from llamafactory.hparams import get_infer_args
        from llamafactory.model import load_model, load_tokenizer

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = self.dtype if self.dtype != "auto" else ("bfloat16" if device.startswith("cuda") else "float32")
        args = {"model_name_or_path": self.model, "template": self.template, "infer_dtype": dtype, "trust_remote_code": True}
        if self.image_max_pixels:
            args["image_max_pixels"] = self.image_max_pixels
        if self.adapter and with_model:
            args["adapter_name_or_path"] = self.adapter
        model_args, data_args, finetuning_args, _ = get_infer_args(args)
        model_args.device_map = {"": device}
        tokenizer_module = load_tokenizer(model_args)
        tokenizer, processor = tokenizer_module["tokenizer"], tokenizer_module["processor"]
        tokenizer.padding_side = "left"
        template = get_template_and_fix_tokenizer(tokenizer, data_args)
        if not with_model:
            return Loaded(None, tokenizer, processor, template)
        model = load_model(tokenizer, model_args, finetuning_args, is_trainable=False)
        model.eval()
        return Loaded(model, tokenizer, processor, template)

    def load_without_model(self) -> Loaded:
        """Tokenizer, processor and template only: enough to re-create the exact views a build
        fed the model (``seva inspect``) without loading weights. ``generate`` is then unavailable."""
        with self._load_lock:
            if "loaded" not in self.__dict__:
                self.__dict__["loaded"] = self._load(with_model=False)
        return self.__dict__["loaded"]

    # -- prompts -----------------------------------------------------------------------------
    def _expand_images(self, images) -> list[str]:
        """The image-token text each image expands to, cached by image size (all it depends on)."""
        key = tuple(img.size for img in images)
        if key not in self._expansions:
            _, _, processor, template = self.loaded
            content = SENTINEL.join([IMAGE_TOKEN] * len(images))
            (msg,) = template.mm_plugin.process_messages([{"role": "user", "content": content}], images, [], [], processor)
            self._expansions[key] = msg["content"].split(SENTINEL)
        return self._expansions[key]

    def prompt_ids(self, prompt: str, images) -> list[int]:
        """Token ids of the rendered user turn plus the assistant header, as LLaMA-Factory encodes it."""
        _, tokenizer, processor, template = self.loaded
        parts = prompt.split(IMAGE_TOKEN)
        expansions = self._expand_images(images)
        content = parts[0] + "".join(e + p for e, p in zip(expansions, parts[1:], strict=True))
        messages = [{"role": "user", "content": content}, {"role": "assistant", "content": ""}]
        with self._tokenizer_lock:
            ids, _ = template.encode_oneturn(tokenizer, messages, None, None)
            ids, _ = template.mm_plugin.process_token_ids(ids, None, images, [], [], tokenizer, processor)
        return ids

    def mm_inputs(self, images_per_record: list[list], batch_ids: list[list[int]]) -> dict:
        _, _, processor, template = self.loaded
        flat = [img for imgs in images_per_record for img in imgs]
        n = len(images_per_record)
        return template.mm_plugin.get_mm_inputs(flat, [], [], [len(i) for i in images_per_record], [0] * n, [0] * n, batch_ids, processor)

    # -- generation --------------------------------------------------------------------------
    def generate(self, records: list[LoadedRecord], views: list) -> list[list[str]]:
        """Answers for every record under every view (``None`` is the clean image)."""
        ids, mm = self._take_prepared(records, views) or self.model_inputs(records, views)
        texts = self._generate(ids, mm)
        n = len(records)
        return [texts[v * n : (v + 1) * n] for v in range(len(views))]

    def prepare(self, records: list[LoadedRecord], views: list) -> None:
        """Compute ``generate``'s inputs for this batch ahead of time (called from the prefetch thread).

        Best effort: on any error nothing is kept, and ``generate`` recomputes (and raises) itself.
        With sampling on, pixel-space augmenters are left to ``generate``: they draw from torch's
        global RNG, which sampling in the main thread also uses.
        """
        if not records or (self.do_sample and any(v is not None and v.space != "tensor" for v in views)):
            return
        try:
            inputs = self.model_inputs(records, views)
        except Exception:  # noqa: BLE001 - generate() will recompute and report it
            return
        with self._prepared_lock:
            self._prepared.append((list(records), list(views), inputs))
            while len(self._prepared) > 4:  # a strategy that never calls generate() must not leak
                self._prepared.popleft()

    def _take_prepared(self, records, views):
        with self._prepared_lock:
            for entry in self._prepared:
                recs, vws, inputs = entry
                if _same(recs, records) and _same(vws, views):
                    self._prepared.remove(entry)
                    return inputs
        return None

    def model_inputs(self, records: list[LoadedRecord], views: list) -> tuple[list[list[int]], dict]:
        """Token ids and multimodal tensors of every view of every record, views one after another."""
        clean_ids = [self.prompt_ids(r.record.prompt, r.images) for r in records]
        clean_mm = None
        all_ids, all_mm = [], []
        for v, view in enumerate(views):
            if view is None or view.space == "tensor":
                if clean_mm is None:
                    clean_mm = self.mm_inputs([r.images for r in records], clean_ids)
                mm = clean_mm if view is None else augment_tensors(clean_mm, view, records, v)
                ids = clean_ids
            else:
                images = [[view(img, view_generator(r.seed, v, k)) for k, img in enumerate(r.images)] for r in records]
                ids = [self.prompt_ids(r.record.prompt, imgs) for r, imgs in zip(records, images, strict=True)]
                mm = self.mm_inputs(images, ids)
            all_ids += ids
            all_mm.append(mm)
        return all_ids, concat_mm(all_mm)

    def generation_kwargs(self) -> dict:
        _, tokenizer, _, template = self.loaded
        kwargs = dict(max_new_tokens=self.max_new_tokens, do_sample=self.do_sample, eos_token_id=template.get_stop_token_ids(tokenizer))
        if self.min_new_tokens:
            kwargs["min_new_tokens"] = self.min_new_tokens
        kwargs["pad_token_id"] = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        return kwargs

    def batch_inputs(self, ids: list[list[int]], mm: dict) -> dict:
        """Left-padded ids plus multimodal tensors on the model's device and dtype."""
        import torch

        model, tokenizer, _, _ = self.loaded
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        width = max(map(len, ids))
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids])
        attention_mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
        inputs = {"input_ids": input_ids.to(model.device), "attention_mask": attention_mask.to(model.device)}
        for key, value in mm.items():
            if not isinstance(value, torch.Tensor):
                value = torch.tensor(value)
            if torch.is_floating_point(value):
                value = value.to(model.dtype)
            inputs[key] = value.to(model.device)
        if "mm_token_type_ids" in inspect.signature(model.forward).parameters:
            inputs["mm_token_type_ids"] = mm_token_types(input_ids, model.config).to(model.device)
        return inputs

    def _generate(self, ids: list[list[int]], mm: dict) -> list[str]:
        import torch

        model, tokenizer, _, _ = self.loaded
        inputs = self.batch_inputs(ids, mm)
        with torch.inference_mode():
            out = model.generate(**inputs, **self.generation_kwargs())
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        with self._tokenizer_lock:
            texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [t.strip() for t in texts]


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


def _same(a: list, b: list) -> bool:
    """The same objects in the same order (identity, not equality)."""
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def view_generator(seed: int, view: int, image: int):
    """The generator for image ``image`` of view ``view`` of a record with ``seed``: independent of
    batch layout and order, so a build resumes identically and ``seva inspect`` can re-create the view."""
    import torch

    return torch.Generator().manual_seed((seed + 1_000_003 * view + 7919 * image) % 2**63)


def image_slices(mm: dict) -> list[slice]:
    """Where each image's pixels sit in ``pixel_values``: one row per image (LLaVA, LLaVA-NeXT),
    or a run of patches per image (Qwen2-VL, sized by ``image_grid_thw``)."""
    if "image_grid_thw" in mm:
        counts = [int(c) for c in mm["image_grid_thw"].prod(-1)]
    else:
        counts = [1] * len(mm["pixel_values"])
    starts = [sum(counts[:i]) for i in range(len(counts))]
    return [slice(s, s + c) for s, c in zip(starts, counts, strict=True)]


def augment_tensors(mm: dict, augmenter, records: list[LoadedRecord], view: int) -> dict:
    """A copy of ``mm`` whose pixels went through a tensor-space augmenter, seeded per record and image."""
    pixels = mm["pixel_values"].clone()
    slices = iter(image_slices(mm))
    for record in records:
        for k in range(len(record.images)):
            s = next(slices)
            pixels[s] = augmenter(pixels[s], view_generator(record.seed, view, k))
    return {**mm, "pixel_values": pixels}


def concat_mm(parts: list[dict]) -> dict:
    """Join the multimodal inputs of several views along the batch axis."""
    import torch

    if len(parts) == 1:
        return parts[0]
    out = {}
    for key in parts[0]:
        values = [p[key] for p in parts]
        if isinstance(values[0], torch.Tensor):
            if values[0].dim() >= 2 and key == "pixel_values" and "image_grid_thw" not in parts[0]:
                values = _pad_dim1(values)  # LLaVA-NeXT: views may differ in patch count
            out[key] = torch.cat(values, dim=0)
        else:
            out[key] = [x for v in values for x in v]
    return out


def _pad_dim1(tensors):
    import torch

    if tensors[0].dim() < 5 or len({t.shape[1] for t in tensors}) == 1:
        return tensors
    width = max(t.shape[1] for t in tensors)
    return [torch.cat([t, t.new_zeros((t.shape[0], width - t.shape[1], *t.shape[2:]))], dim=1) for t in tensors]


@hookimpl
def register_backends(register):
    register(HfBackend)

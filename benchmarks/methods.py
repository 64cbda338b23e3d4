"""The timed methods: the builder, bare batched ``generate``, the official-style loop, ``ChatModel``."""

from __future__ import annotations

import shutil
import time

from benchmarks import common
from benchmarks.common import quiet, sha256


def share_loaded(build, loaded) -> None:
    """Give ``build`` the engine ``loaded`` holds, so loading stays outside every timing.

    ``hf``: the backend's ``share_weights``. ``vllm``: the running engine, the vision tower and the
    renderer, and this build's ``close()`` leaves them running (the bench closes ``loaded`` itself)."""
    backend = build.backend
    if hasattr(backend, "share_weights"):
        backend.share_weights(loaded)
        return
    if backend.name == "vllm":
        backend.__dict__.update(_renderer=loaded.renderer, _encoder=loaded.encoder)
        backend._llm = loaded.llm
        backend.close = lambda: None
        return
    raise TypeError(f"the bench cannot share a loaded {backend.name!r} backend")


def run_builder(cfg: dict, loaded_backend, clip=None):
    """``Build(cfg).run()`` timed from construction to the manifest; the model is already loaded
    (``clip``: CSR's loaded CLIP scorer, given to the build's strategy).
    Returns ``(seconds, sha256 of the data file, BuildResult)``."""
    from seva_plugin.pipeline.build import Build

    shutil.rmtree(cfg["output"]["dataset_dir"], ignore_errors=True)
    start = time.perf_counter()
    build = Build(cfg)
    share_loaded(build, loaded_backend)
    if clip is not None:
        build.strategy.clip = clip  # the strategy's cached_property, filled with the loaded scorer
    result = build.run(progress=False)
    seconds = time.perf_counter() - start
    return seconds, sha256(result.data_file), result


def prepared_batches(backend, augmenter, records, batch_size: int) -> list[dict]:
    """The builder's own model inputs for every batch (clean + augmented), made before timing."""
    from seva_plugin.interfaces import CLEAN, GenerationRequest, View

    views = [CLEAN, View(1, augmenter)]
    out = []
    for i in range(0, len(records), batch_size):
        ids, _, mm = backend.model_inputs([GenerationRequest(r, v) for v in views for r in records[i : i + batch_size]])
        out.append(backend.batch_inputs(ids, mm))
    return out


def run_bare(model, batches: list[dict], gen_kwargs: dict) -> float:
    """Only ``model.generate`` on ready batches, with the KV cache the ``hf`` backend gives it (room
    kept for the new tokens): the floor under the builder's time."""
    import torch

    from seva_plugin.plugins.backends.hf_prompt_cache import reserved

    seconds = 0.0
    with torch.inference_mode():
        for inputs in batches:
            start = time.perf_counter()
            model.generate(**inputs, **gen_kwargs, past_key_values=reserved(model, gen_kwargs["max_new_tokens"]))
            seconds += time.perf_counter() - start
    return seconds


def run_sequential(model, processor, augmenter, rows: list[dict], texts: list[str], tokens: int, pad_id: int, eos_ids) -> float:
    """The official SeVa loop: per prompt, open the image, then per view processor + generate."""
    import torch
    from PIL import Image

    from seva_plugin.pipeline.views import record_seed, view_generator

    start = time.perf_counter()
    with torch.inference_mode():
        for row, text in zip(rows, texts, strict=True):
            image = Image.open(row["image"]).convert("RGB")
            for view in (0, 1):
                inputs = processor(images=[image], text=text, return_tensors="pt", add_special_tokens=False)
                if view:
                    inputs["pixel_values"] = augmenter(inputs["pixel_values"], view_generator(record_seed(0, row["id"]), 1, 0))
                inputs = {k: v.to(model.device, model.dtype) if torch.is_floating_point(v) else v.to(model.device) for k, v in inputs.items()}
                out = model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=pad_id, eos_token_id=eos_ids)
                processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return time.perf_counter() - start


def run_chatmodel(model_dir: str, template: str, rows: list[dict], tokens: int) -> tuple[float, int]:
    """LLaMA-Factory's ChatModel, huggingface engine, one ``chat`` call per prompt and view.

    ``chat`` takes images, not pixel tensors, so the augmented view passes the same image again:
    this measures the per-call cost of the loop a user would write around ChatModel."""
    from llamafactory.chat import ChatModel

    with quiet():
        chat = ChatModel(
            {
                "model_name_or_path": model_dir,
                "template": template,
                "infer_backend": "huggingface",
                "infer_dtype": "float32",
                "trust_remote_code": common.TRUST_REMOTE_CODE,
            }
        )
    chat.engine.generating_args["min_new_tokens"] = tokens  # GeneratingArguments has no such key; GenerationConfig has
    lengths = 0
    try:
        start = time.perf_counter()
        for row in rows:
            for _view in (0, 1):
                messages = [{"role": "user", "content": "<image>" + row["question"]}]
                (response,) = chat.chat(messages, images=[row["image"]], max_new_tokens=tokens, do_sample=False)
                lengths += response.response_length
        seconds = time.perf_counter() - start
    finally:
        chat._loop.call_soon_threadsafe(chat._loop.stop)
        del chat
    return seconds, lengths

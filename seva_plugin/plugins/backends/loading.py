"""What the built-in backends read before loading a model: LLaMA-Factory's inference arguments, and
the model's context length from its config (no weights), which bounds ``max_new_tokens``; and the
``hf`` backend's model, loaded by LLaMA-Factory in the backend's dtype."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from seva_plugin.errors import ConfigError


def infer_args(
    model: str,
    template: str,
    dtype: str = "float32",
    image_max_pixels: int | None = None,
    trust_remote_code: bool = False,
    adapter: str | None = None,
    inputs: dict[str, Any] | None = None,
) -> tuple[Any, Any, Any]:
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


_LOAD_CONFIG_LOCK = threading.Lock()


def load_model_in(dtype: str, tokenizer: Any, model_args: Any, finetuning_args: Any) -> Any:
    """LLaMA-Factory's ``load_model`` for inference, in ``dtype`` whatever the checkpoint's config.json says.

    LLaMA-Factory 0.9.5 loads with ``torch_dtype="auto"`` (``load_model`` in llamafactory/model/loader.py),
    which transformers resolves to the config's dtype; its ``infer_dtype`` only sets the compute dtype of
    quantized models (``patch_config`` in llamafactory/model/patcher.py). So a bfloat16 checkpoint would run
    in bfloat16 under ``backend.dtype: float32``. Here the config ``load_model`` reads says ``dtype``, and
    transformers loads as ``from_pretrained(dtype=...)`` does. A cast after loading would not be the same:
    ``model.to()`` rounds the float32 rotary frequencies to bfloat16, and buffers made at load keep the
    checkpoint's rounding (Gemma 3's ``embed_scale``)."""
    import torch
    from llamafactory.model import load_model, loader

    wanted = getattr(torch, dtype)
    read = loader.load_config

    def load_config(args: Any) -> Any:
        config = read(args)
        config.dtype = wanted
        return config

    with _LOAD_CONFIG_LOCK:  # one swap at a time, always undone
        loader.load_config = load_config
        try:
            model = load_model(tokenizer, model_args, finetuning_args, is_trainable=False)
        finally:
            loader.load_config = read
    loaded = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if wanted not in loaded:  # a LLaMA-Factory that no longer reads the config through load_config
        raise RuntimeError(f"LLaMA-Factory loaded {model_args.model_name_or_path} in {sorted(map(str, loaded))}, not in backend.dtype {dtype}.")
    return model


CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def context_length(config: Any) -> int | None:
    """The number of positions a model's text part takes (``max_position_embeddings`` and its
    older names), or None when its config does not say. ``config``: a transformers config."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for attr in CONTEXT_KEYS:
        value = getattr(text, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def config_json(model: str) -> dict[str, Any] | None:
    """config.json of a local model folder or of a hub id already in the local cache; None otherwise."""
    path = os.path.join(os.path.expanduser(model), "config.json")
    if not os.path.isfile(path):
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(model, "config.json")
        except Exception:  # noqa: BLE001 - not a hub id either: nothing to read
            return None
        if not isinstance(cached, str):
            return None
        path = cached
    try:
        with open(path, encoding="utf-8") as fh:
            config = json.load(fh)
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def config_context(config: dict[str, Any] | None) -> int | None:
    """:func:`context_length` from a config.json dict (its text part first)."""
    if not config:
        return None
    for part in (config.get("text_config") or {}, config.get("llm_config") or {}, config):
        for key in CONTEXT_KEYS:
            value = part.get(key) if isinstance(part, dict) else None
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def check_max_new_tokens(max_new_tokens: int, context: int | None, model: str, limit_key: str = "the model's context") -> None:
    """Refuse ``max_new_tokens`` that cannot fit in ``context`` beside even a one-token prompt,
    before any model loads (a huge value would otherwise run for hours or be capped silently)."""
    if context is not None and max_new_tokens >= context:
        raise ConfigError(
            f"backend.max_new_tokens is {max_new_tokens:,}, but {limit_key} of {model} holds {context:,} tokens, prompt included: "
            f"set backend.max_new_tokens below {context:,} (SeVa's official value is 512)."
        )

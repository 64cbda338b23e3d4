"""What the ``vllm`` backend hands vLLM: prompt ids with one placeholder per image, and image embeddings.

vLLM runs the language model only (``enable_mm_embeds=True`` with an image limit of 0, its
embedding-only mode: the vision tower is neither built nor loaded). The vision tower and the
projector run here, in the build's process, through transformers' own ``get_image_features`` on
the normalised pixel tensor that LLaMA-Factory's multimodal plugin makes (``rendering.py``), after
any tensor-space augmenter. So:

- vLLM sees exactly the image features the ``hf`` backend computes, for every view and family:
  SeVa's diffusion noise on LLaVA-NeXT's AnyRes tiles or Qwen2-VL's flattened patches has no
  image that vLLM's own processor could be given instead;
- checkpoints that vLLM 0.26 cannot load as a whole load anyway: transformers 5 saves LLaVA's CLIP
  tower as ``vision_tower.embeddings.*``, which vLLM refuses ("no module or parameter named
  'vision_tower.embeddings'"); in embedding-only mode vLLM never reads the tower's weights, and
  transformers reads them here in any layout it writes. Nothing is converted or copied.

Prompt ids are LLaMA-Factory's own (the ``hf`` backend's) with each image's run of image tokens
cut back to one token; vLLM expands it again to the number of embedding rows, which gives the
same ids (a test compares them).

Nothing here imports torch, transformers or vLLM at module level.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
from dataclasses import dataclass
from typing import Any

from seva_plugin.errors import ConfigError
from seva_plugin.plugins.backends.pixels import image_slices

# config.json model_type -> how vLLM takes that family's image embeddings
#   "list": one (tokens, hidden) tensor per image;  "grid": {"image_embeds", "image_grid_thw"} per prompt
EMBEDDING_FORMS: dict[str, str] = {"llava": "list", "llava_next": "list", "qwen2_vl": "grid", "qwen2_5_vl": "grid", "qwen3_vl": "grid", "internvl": "list"}
MM_KEYS = ("pixel_values", "image_sizes", "image_grid_thw")


def read_config(model: str) -> dict | None:
    """config.json of a local model folder, or ``None`` (a hub id, or none there)."""
    path = os.path.join(os.path.expanduser(model), "config.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def check_family(model: str, model_type: str | None) -> str:
    """The embedding form for ``model_type``, or a ConfigError that names the families served."""
    if model_type in EMBEDDING_FORMS:
        return EMBEDDING_FORMS[model_type]
    served = ", ".join(sorted(EMBEDDING_FORMS))
    raise ConfigError(f"backend 'vllm' does not serve {model} (model_type {model_type or 'unknown'}): it serves {served}. Use backend.name=hf for this model.")


def text_head_dim(config: dict) -> int | None:
    """The language model's attention head size from a config.json dict."""
    text = config.get("text_config") or config
    if text.get("head_dim"):
        return int(text["head_dim"])
    hidden, heads = text.get("hidden_size"), text.get("num_attention_heads")
    return hidden // heads if hidden and heads else None


def check_cpu_head_dim(model: str, config: dict | None) -> None:
    """vLLM's CPU attention runs some head sizes only, and says so only at the first request."""
    if config is None:
        return
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    head_dim = text_head_dim(config)
    supported = CPUAttentionBackend.get_supported_head_sizes()
    if head_dim is not None and head_dim not in supported:
        raise ConfigError(
            f"{model}: its language model's attention head size is {head_dim}, and vLLM's CPU attention runs only "
            f"{', '.join(map(str, supported))}. Use backend.name=hf on this machine, or a GPU."
        )


def adapter_rank(adapter: str) -> int:
    """A LoRA adapter's rank; refuses adapters that change the vision tower or projector (those run here, unadapted)."""
    path = os.path.join(adapter, "adapter_config.json")
    if not os.path.isfile(path):
        raise ConfigError(f"backend.adapter: {adapter} has no adapter_config.json (a PEFT LoRA adapter folder is expected).")
    with open(path, encoding="utf-8") as fh:
        cfg = json.load(fh)
    if cfg.get("peft_type", "LORA") != "LORA":
        raise ConfigError(f"backend.adapter: vLLM applies LoRA adapters only; {adapter} is {cfg.get('peft_type')}. Merge it first (llamafactory-cli export).")
    weights = os.path.join(adapter, "adapter_model.safetensors")
    if os.path.isfile(weights):
        from safetensors import safe_open

        with safe_open(weights, "pt") as fh:
            vision = [k for k in fh.keys() if any(p in k for p in ("vision_tower", "multi_modal_projector", "visual.", "image_newline"))]
        if vision:
            raise ConfigError(
                f"backend.adapter: {adapter} also trains the vision side ({vision[0]}, ...), which backend 'vllm' runs without the adapter. "
                "Merge it first (llamafactory-cli export) and set model to the merged folder."
            )
    ranks = [int(cfg.get("r") or 8), *map(int, (cfg.get("rank_pattern") or {}).values())]
    return max(ranks)


@dataclass
class ImageEncoder:
    """The model's vision tower and projector only, loaded by transformers, on ``device``."""

    model: Any  # a transformers *ForConditionalGeneration with a zero-layer, one-token language model
    device: str

    @classmethod
    def load(cls, path: str, dtype: str, device: str, trust_remote_code: bool = False) -> ImageEncoder:
        """Load the vision weights of ``path`` (any layout transformers reads), skipping the language model's."""
        import torch
        import transformers
        from transformers import AutoConfig, AutoModelForImageTextToText

        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        small = copy.deepcopy(config)
        text = small.get_text_config()
        text.num_hidden_layers = 0  # its layers' weights are then unexpected keys: never read
        if getattr(text, "layer_types", None) is not None:
            text.layer_types = []
        text.vocab_size = 1  # nor the embedding and output rows
        text.pad_token_id = None
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()  # the skipped weights are reported as unused
        transformers.logging.disable_progress_bar()
        try:
            model: Any = AutoModelForImageTextToText.from_pretrained(
                path, config=small, dtype=getattr(torch, dtype), ignore_mismatched_sizes=True, trust_remote_code=trust_remote_code
            )
        finally:
            transformers.logging.set_verbosity(verbosity)
            transformers.logging.enable_progress_bar()
        return cls(model.to(device).eval(), device)

    @property
    def dtype(self):
        return next(self.model.parameters()).dtype

    def features(self, mm: dict, rows: list[int] | None = None) -> list:
        """One ``(tokens, hidden)`` tensor per image of ``mm`` (the processor's tensors for a batch), in order, on the CPU."""
        import torch

        accepted = inspect.signature(self.model.get_image_features).parameters
        inputs = {k: mm[k] for k in MM_KEYS if k in mm and k in accepted}
        n_images = len(image_slices(mm, rows)) if "pixel_values" in mm else 0  # rows: InternVL tiles an image (pixels.image_slices)
        if n_images == 0:
            return []
        with torch.inference_mode():
            out = self._encode(inputs)
            if not isinstance(out, list | tuple) or len(out) != n_images:  # LLaVA-NeXT packs every image into one tensor
                out = [self._encode(_one_image(inputs, mm, i, rows))[0] for i in range(n_images)]
        return [f.reshape(-1, f.shape[-1]).to("cpu") for f in out]

    def _encode(self, inputs: dict):
        import torch

        moved = {}
        for key, value in inputs.items():
            value = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            moved[key] = value.to(self.device, self.dtype) if torch.is_floating_point(value) else value.to(self.device)
        result = self.model.get_image_features(**moved, return_dict=True)
        out = result.pooler_output
        out = list(out) if isinstance(out, list | tuple) else [out]
        deepstack = getattr(result, "deepstack_features", None)
        if deepstack:  # Qwen3-VL: vLLM takes each image token's DeepStack levels after its features, on the last axis
            levels = torch.cat(list(deepstack), dim=-1).split([len(o) for o in out])
            out = [torch.cat([o, d], dim=-1) for o, d in zip(out, levels, strict=True)]
        return out


def _one_image(inputs: dict, mm: dict, i: int, rows: list[int] | None = None) -> dict:
    """The processor tensors of image ``i`` alone."""
    s = image_slices(mm, rows)[i]
    one = {"pixel_values": inputs["pixel_values"][s]}
    for key in ("image_sizes", "image_grid_thw"):
        if key in inputs:
            one[key] = inputs[key][i : i + 1]
    return one


def image_token_id(hf_config: dict) -> int:
    for key in ("image_token_id", "image_token_index"):
        if isinstance(hf_config.get(key), int):
            return hf_config[key]
    raise ConfigError("the model's config.json names no image token (image_token_id / image_token_index).")


def collapse_images(ids: list[int], image_token: int, counts: list[int], markers: tuple[int, int] | None = None) -> list[int]:
    """``ids`` with each image's run of ``counts[i]`` image tokens cut back to one token. ``markers``:
    the tokens around each run that vLLM writes back itself (InternVL's ``<img>`` and ``</img>``),
    dropped with the run."""
    out, i, image = [], 0, 0
    while i < len(ids):
        if ids[i] != image_token:
            out.append(ids[i])
            i += 1
            continue
        if image >= len(counts) or ids[i : i + counts[image]] != [image_token] * counts[image]:
            raise RuntimeError("the prompt's image tokens do not match the images' feature counts")
        if markers and out and out[-1] == markers[0]:
            out.pop()
        out.append(image_token)
        i += counts[image]
        if markers and i < len(ids) and ids[i] == markers[1]:
            i += 1
        image += 1
    if image != len(counts):
        raise RuntimeError(f"the prompt holds {image} images' tokens, the record {len(counts)} images")
    return out


def engine_batches(rows: list, form: str, model_type: str | None) -> list[list[int]]:
    """Row indices to send to the engine together: all of them, except for families whose vLLM
    model takes image embeddings as one stacked tensor (LLaVA-NeXT: its schema fixes the
    feature size across the images the engine encodes in one step, and an engine given two
    sizes at once dies with "data contains inconsistent shapes"). Those go one feature size at a time."""
    if form != "list" or model_type == "llava":  # LLaVA-1.5: one size for every image
        return [list(range(len(rows)))]
    groups: dict[tuple, list[int]] = {}
    for i, row in enumerate(rows):
        sizes = {f.shape[0] for f in row.prompt.get("multi_modal_data", {}).get("image", [])}
        if len(sizes) > 1:
            raise ConfigError(
                "backend 'vllm': vLLM 0.26 cannot take images of different feature sizes in one LLaVA-NeXT prompt "
                f"(record '{row.record_id}'); use backend.name=hf for multi-image LLaVA-NeXT records."
            )
        groups.setdefault(tuple(sizes), []).append(i)
    return list(groups.values())

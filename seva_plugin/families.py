"""Model families and the one rule for which LLaMA-Factory template fits which model.

``seva check-recipe`` (before training) and ``seva build`` (before any model loads) both ask
:func:`template_misfit`: a template's multimodal plugin expands ``<image>`` and processes pixels
for some model types only (LLaMA-Factory's ``data/mm_plugin.py``), so a template of another
family makes image features and image tokens disagree, or fails mid-build (a LLaVA model with
``template=qwen2_vl``: ``'CLIPImageProcessor' object has no attribute 'merge_size'``).

Thinking and non-thinking templates of one family (``qwen3_vl`` and ``qwen3_vl_nothink``) fit
the same models but train differently: LLaMA-Factory's reasoning templates prepend an empty
``<think>`` block to every answer that has none. :func:`thinking_mismatch` says when a build and a
recipe disagree on that.

Nothing here imports LLaMA-Factory at module level.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass

# Multimodal plugin of a template (LLaMA-Factory's data/mm_plugin.py PLUGINS) -> the model_type values
# (config.json) it can process. Plugins not listed are not checked.
PLUGIN_MODEL_TYPES: dict[str, set[str]] = {
    "llava": {"llava"},
    "pixtral": {"llava", "mistral3"},
    "llava_next": {"llava_next"},
    "llava_next_video": {"llava_next_video"},
    "video_llava": {"video_llava"},
    "qwen2_vl": {"qwen2_vl", "qwen2_5_vl", "Keye", "dots_ocr"},
    "qwen3_vl": {"qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe"},
    "paligemma": {"paligemma"},
    "mllama": {"mllama"},
    "gemma3": {"gemma3"},
    "gemma3n": {"gemma3n"},
    "intern_vl": {"internvl", "interns1"},
    "glm4v": {"glm4v", "glm4v_moe", "glm_ocr"},
    "minicpm_v": {"minicpmv", "minicpmo"},
    "kimi_vl": {"kimi_vl"},
    "llama4": {"llama4"},
}
KNOWN_MODEL_TYPES = set().union(*PLUGIN_MODEL_TYPES.values())


@dataclass(frozen=True)
class Family:
    """A model family this plugin ships a recipe, a build config and a tiny twin for."""

    name: str
    model_types: tuple[str, ...]  # config.json model_type
    templates: tuple[str, ...]  # LLaMA-Factory templates; the first is the recipe's
    twin: str  # builder in seva_plugin.dev.tiny_models
    pixels: str  # how the processor lays out one image's pixels (plugins/backends/pixels.py)


FAMILIES: tuple[Family, ...] = (
    Family("LLaVA-1.5", ("llava",), ("llava",), "build_tiny_llava", "one row (C, H, W) an image"),
    Family("LLaVA-NeXT", ("llava_next",), ("llava_next",), "build_tiny_llava_next", "one row an image: the base view, then AnyRes tiles"),
    Family("Qwen2-VL", ("qwen2_vl",), ("qwen2_vl",), "build_tiny_qwen2_vl", "flattened patches, t*h*w rows an image (image_grid_thw)"),
    Family("Qwen2.5-VL", ("qwen2_5_vl",), ("qwen2_vl",), "build_tiny_qwen2_5_vl", "flattened patches, t*h*w rows an image (image_grid_thw)"),
    Family("Qwen3-VL", ("qwen3_vl",), ("qwen3_vl_nothink", "qwen3_vl"), "build_tiny_qwen3_vl", "flattened 16-px patches, t*h*w rows an image (image_grid_thw)"),
    Family("InternVL3", ("internvl",), ("intern_vl",), "build_tiny_internvl3", "448-px tiles: one an image, or a grid plus a thumbnail (crop_to_patches)"),
    Family("Gemma 3", ("gemma3",), ("gemma3",), "build_tiny_gemma3", "one 896-px row an image, then its crops (image_do_pan_and_scan)"),
)


@functools.lru_cache(maxsize=1)
def templates() -> dict[str, str]:
    """template name -> name of its multimodal plugin ('base' when it has no image support)."""
    from llamafactory.data.mm_plugin import PLUGINS
    from llamafactory.data.template import TEMPLATES

    by_class = {cls: name for name, cls in PLUGINS.items()}
    return {name: by_class.get(type(t.mm_plugin), type(t.mm_plugin).__name__) for name, t in TEMPLATES.items()}


def is_reasoning(template: str) -> bool:
    """Whether LLaMA-Factory encodes answers with ``template`` as a thinking model's (``ReasoningTemplate``):
    an answer without a ``<think>`` block gets an empty one prepended, and the loss covers it."""
    from llamafactory.data.template import TEMPLATES, ReasoningTemplate

    return isinstance(TEMPLATES.get(template), ReasoningTemplate)


def templates_for(model_type: str | None) -> list[str]:
    """Every installed template whose image plugin processes ``model_type``."""
    plugins = {p for p, types in PLUGIN_MODEL_TYPES.items() if model_type in types}
    return sorted(t for t, p in templates().items() if p in plugins)


def template_misfit(template: str, model_type: str | None, model: str) -> str | None:
    """Why ``template`` cannot serve ``model`` (a model of ``model_type``), or ``None`` when it fits or
    the model type is not one of the families checked. ``model`` names the model in the message."""
    plugin = templates().get(template)
    if plugin is None or not model_type:
        return None
    if plugin == "base" and model_type in KNOWN_MODEL_TYPES:
        return (
            f"template '{template}' has no image support, but {model} is a {model_type} vision-language model: "
            'LLaMA-Factory stops with "This model does not support image input".'
        )
    if plugin in PLUGIN_MODEL_TYPES and model_type not in PLUGIN_MODEL_TYPES[plugin]:
        return (
            f"template '{template}' (image plugin {plugin}) does not fit {model} (model_type {model_type}): it expands <image> for "
            f"{', '.join(sorted(PLUGIN_MODEL_TYPES[plugin]))} models, so image features and image tokens would not match."
        )
    return None


def thinking_mismatch(generated: str, trained: str) -> str | None:
    """Why answers generated with template ``generated`` must not be trained with ``trained``, when the two
    differ in thinking mode (``qwen3_vl`` vs ``qwen3_vl_nothink``); ``None`` otherwise."""
    if generated == trained or is_reasoning(generated) == is_reasoning(trained):
        return None
    thinking, plain = (generated, trained) if is_reasoning(generated) else (trained, generated)
    return (
        f"'{thinking}' is a thinking template and '{plain}' is not: with '{thinking}' LLaMA-Factory trains every answer that has "
        f"no <think> block as '<think>\\n\\n</think>\\n\\n' + answer, and the model answers after its own thinking; with '{plain}' "
        "neither. Generate and train with the same one."
    )


def model_type_of(model: str) -> str | None:
    """``model_type`` from the config.json of a local model folder or of a hub id in the Hugging Face
    cache; ``None`` when neither is readable here (nothing is downloaded)."""
    path = os.path.expanduser(model)
    found = os.path.join(path, "config.json") if os.path.isdir(path) else None
    if found is None:
        try:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(model, "config.json")
            found = hit if isinstance(hit, str) else None
        except Exception:  # an odd id or an old huggingface_hub: nothing known
            found = None
    if not found:
        return None
    try:
        with open(found, encoding="utf-8") as fh:
            config = json.load(fh)
    except (OSError, ValueError):
        return None
    return config.get("model_type") if isinstance(config, dict) else None


def default_template_of(model: str) -> str | None:
    """LLaMA-Factory's default template for a hub id in its model table (extras/constants.py), else ``None``."""
    from llamafactory.extras.constants import DEFAULT_TEMPLATE, SUPPORTED_MODELS

    wanted = model.lower()
    for name, paths in SUPPORTED_MODELS.items():
        if any(str(p).lower() == wanted for p in paths.values()):
            return DEFAULT_TEMPLATE.get(name)
    return None


def check_model_template(model: str, template: str) -> None:
    """Raise ``ConfigError`` when ``template`` does not fit ``model`` (``seva build``, before any model loads).

    The model's config.json decides (a local folder, or a hub id in the Hugging Face cache); a hub id
    not downloaded yet is judged by LLaMA-Factory's default template for it, when its table has one."""
    from seva_plugin.errors import ConfigError

    model_type = model_type_of(model)
    problem = template_misfit(template, model_type, model)
    if problem:
        fitting = templates_for(model_type)
        raise ConfigError(problem + (f" Templates for it: {', '.join(fitting)}." if fitting else ""))
    if model_type is None and not os.path.isdir(os.path.expanduser(model)):
        default = default_template_of(model)
        plugin, expected = templates().get(template), templates().get(default) if default else None
        if expected and expected != "base" and plugin in PLUGIN_MODEL_TYPES and plugin != expected:
            raise ConfigError(
                f"template '{template}' (image plugin {plugin}) does not fit {model}, whose LLaMA-Factory template is "
                f"'{default}' (image plugin {expected}): image features and image tokens would not match. Use template {default}."
            )


@functools.lru_cache(maxsize=1)
def pan_and_scan_problem() -> str | None:
    """Why Gemma 3's pan-and-scan (``image_do_pan_and_scan``) cannot run with the installed
    LLaMA-Factory and transformers, or ``None`` when it can. Found by running LLaMA-Factory's own
    Gemma 3 prompt expansion on one wide image with a small Gemma 3 image processor (no weights):
    LLaMA-Factory 0.9.5 indexes the processor's ``num_crops`` as a nested list, and transformers 5
    returns a 1-D tensor, so both ``seva build`` and ``llamafactory-cli train`` stop with an IndexError."""
    from types import SimpleNamespace

    from llamafactory.data.template import TEMPLATES
    from PIL import Image
    from transformers import Gemma3ImageProcessor

    plugin = TEMPLATES["gemma3"].mm_plugin
    processor = SimpleNamespace(
        image_processor=Gemma3ImageProcessor(size={"height": 32, "width": 32}),
        boi_token="<start_of_image>",
        full_image_sequence="<start_of_image><image_soft_token><end_of_image>",
        image_do_pan_and_scan=True,
        image_max_pixels=768 * 768,
        image_min_pixels=32 * 32,
        image_seq_length=1,
    )
    try:
        plugin.process_messages([{"role": "user", "content": "<image>"}], [Image.new("RGB", (768, 256))], [], [], processor)
    except Exception as exc:  # what LLaMA-Factory would raise on every pan-and-scan prompt
        return (
            "image_do_pan_and_scan does not work with the installed LLaMA-Factory and transformers: its Gemma 3 plugin fails on "
            f"the first image ({type(exc).__name__}: {exc}), in `llamafactory-cli train` as in `seva build`. Leave it off "
            "(each image is then one 896-px view, as in LLaMA-Factory's default)."
        )
    return None

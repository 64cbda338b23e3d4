"""The model and its template: what the model is (local folder, Hugging Face cache or hub id) and whether the template fits it."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from seva_plugin.commands.check_recipe.facts import known_models
from seva_plugin.commands.check_recipe.files import read_json
from seva_plugin.commands.check_recipe.report import CheckReport
from seva_plugin.errors import did_you_mean
from seva_plugin.families import PLUGIN_MODEL_TYPES, template_misfit, templates

# PLUGIN_MODEL_TYPES and the template/model rule live in seva_plugin.families: `seva build` applies the same rule.

# Hub ids that are not in LLaMA-Factory's model table, recognised by name: (pattern, plugin, model_type).
ID_PATTERNS = [
    (r"qwen2\.5-vl|qwen2_5_vl", "qwen2_vl", "qwen2_5_vl"),
    (r"qwen2-vl|qwen2_vl", "qwen2_vl", "qwen2_vl"),
    (r"qwen3-vl|qwen3_vl", "qwen3_vl", "qwen3_vl"),
    (r"llava-next-video|llava_next_video", "llava_next_video", "llava_next_video"),
    (r"llava-v1\.6|llava-next|llava_next|llava-1\.6", "llava_next", "llava_next"),
    (r"llava-v1\.5|llava-1\.5|llava_v1_5|llava1\.5", "llava", "llava"),
]


@dataclass
class ModelFacts:
    where: str  # local | cache | id | missing
    model_type: str | None = None
    plugin: str | None = None  # the image-processing family: llava, llava_next, qwen2_vl, ...
    config: dict = field(default_factory=dict)
    preprocessor: dict = field(default_factory=dict)
    default_template: str | None = None


def _plugin_for_model_type(model_type: str | None, template_plugin: str | None) -> str | None:
    candidates = [p for p, types in PLUGIN_MODEL_TYPES.items() if model_type in types]
    if template_plugin in candidates:
        return template_plugin
    return candidates[0] if candidates else None


def inspect_model(model: str, template_plugin: str | None, report: CheckReport) -> ModelFacts:
    path = os.path.expanduser(model)
    if os.path.isdir(path):
        config = read_json(os.path.join(path, "config.json"))
        if not config:
            report.error(f"model_name_or_path {model} is a folder without a readable config.json.")
            return ModelFacts("missing")
        pre = read_json(os.path.join(path, "preprocessor_config.json"))
        mt = config.get("model_type")
        return ModelFacts("local", mt, _plugin_for_model_type(mt, template_plugin), config, pre)
    looks_like_path = model.startswith((".", "/", "~")) or model.count("/") > 1
    if looks_like_path:
        report.error(f"model_name_or_path {model} is not a folder here and not a hub id (owner/name).")
        return ModelFacts("missing")
    default_template = known_models().get(model.lower())
    config, pre = {}, {}
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(model, "config.json")
        if isinstance(hit, str):
            config = read_json(hit)
            hit = try_to_load_from_cache(model, "preprocessor_config.json")
            pre = read_json(hit) if isinstance(hit, str) else {}
    except Exception:  # an old or absent huggingface_hub: fall back to the id
        config = {}
    if config.get("model_type"):
        mt = config["model_type"]
        return ModelFacts("cache", mt, _plugin_for_model_type(mt, template_plugin), config, pre, default_template)
    plugin = mt = None
    if default_template and templates().get(default_template, "base") != "base":  # a vision-language model in LLaMA-Factory's table
        plugin = templates()[default_template]
    for pattern, p, t in ID_PATTERNS:
        if re.search(pattern, model.lower()) and plugin in (None, p):
            plugin, mt = p, t
            break
    if plugin:
        report.warn(
            f"model {model} is not a local folder and not in the Hugging Face cache: the template and image-token checks "
            f"used the {plugin} family known for this id"
            + (f" (LLaMA-Factory's default template: {default_template})" if default_template else "")
            + ", not its config.json."
        )
    else:
        report.warn(
            f"model {model} is not a local folder (if it is meant as one, it does not exist here), not in the Hugging Face "
            "cache and of no family known by name: the template and image-token checks were skipped."
        )
    return ModelFacts("id", mt, plugin, {}, {}, default_template)


def check_template(recipe: dict, report: CheckReport) -> tuple[str | None, ModelFacts | None]:
    """The template's image plugin and the model's facts, reporting a template that does not fit the model."""
    known = templates()
    template = recipe.get("template")
    plugin = None
    if template is None:
        report.error("template is not set: multimodal training needs a template with image support matching the model (llava, llava_next, qwen2_vl, ...).")
    elif template not in known:
        report.error(f"template '{template}' does not exist in the installed LLaMA-Factory.{did_you_mean(template, known)}")
        template = None
    else:
        plugin = known[template]
    model = recipe.get("model_name_or_path")
    if not model:
        return plugin, None
    facts = inspect_model(str(model), plugin, report)
    if template is None or facts.where == "missing":
        return plugin, facts
    family_templates = sorted(t for t, p in known.items() if facts.plugin and p == facts.plugin)
    suggestion = (
        f" Use template {facts.default_template}."
        if facts.default_template
        else (f" Templates for it: {', '.join(family_templates)}." if family_templates else "")
    )
    if facts.where in ("local", "cache"):
        problem = template_misfit(template, facts.model_type, model)
        if problem:
            report.error(problem + suggestion)
    elif facts.plugin:
        if plugin == "base":
            report.error(f"template '{template}' has no image support, but {model} is a {facts.plugin}-family vision-language model.{suggestion}")
        elif plugin != facts.plugin:
            report.error(
                f"template '{template}' (image plugin {plugin}) does not fit {model}, a {facts.plugin}-family model: image features and image tokens "
                f"would not match.{suggestion}"
            )
    if facts.default_template and facts.default_template != template and plugin == known.get(facts.default_template):
        report.warn(f"template '{template}' handles {model}'s images but LLaMA-Factory's template for it is '{facts.default_template}' (another chat format).")
    return plugin, facts

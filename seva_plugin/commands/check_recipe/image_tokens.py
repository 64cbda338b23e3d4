"""Image tokens: how many one image expands to, whether cutoff_len leaves room for them, and whether
generation and training see images at the same image_max_pixels."""

from __future__ import annotations

from seva_plugin.commands.check_recipe.build_configs import generation_config
from seva_plugin.commands.check_recipe.datasets import DatasetFacts
from seva_plugin.commands.check_recipe.facts import lf_default, setting
from seva_plugin.commands.check_recipe.files import section
from seva_plugin.commands.check_recipe.model import ModelFacts
from seva_plugin.commands.check_recipe.report import CheckReport

# Tokens a SeVa prompt takes besides its image tokens: system prompt, role markers and the question
# (OCR-VQA questions are short; TextCaps prompts with "Reference OCR token: ..." run to ~100 tokens).
PROMPT_TOKENS = 128
# The longest answer a build generates unless its config says otherwise (official SeVa: 512).
ANSWER_TOKENS = 512

# LlavaNextConfig's default image_grid_pinpoints (transformers models/llava_next/configuration_llava_next.py).
DEFAULT_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]


def image_tokens(facts: ModelFacts, template_plugin: str | None, image_max_pixels: int, crop_to_patches: bool = False) -> tuple[int, str] | None:
    """The most image tokens one image can expand to, and how that was found (``crop_to_patches``: LLaMA-Factory's key, InternVL tiles)."""
    family = facts.plugin
    if family is None or (template_plugin and template_plugin != family):
        return None  # an unknown model, or a mismatch reported by the template check
    cfg, pre = facts.config or {}, facts.preprocessor or {}
    vc = cfg.get("vision_config") or {}
    src = "config.json" if cfg else "the family's usual config"
    if family in ("llava", "llava_next"):
        crop = pre.get("crop_size") or vc.get("image_size") or 336
        if isinstance(crop, dict):
            crop_h, crop_w = crop.get("height", 336), crop.get("width", 336)
        else:
            crop_h = crop_w = int(crop)
        patch = int(vc.get("patch_size") or pre.get("patch_size") or 14)
        extra = 1 if cfg.get("vision_feature_select_strategy") == "full" else 0
        base = (crop_h // patch) * (crop_w // patch) + extra
        if family == "llava":
            return base, f"{crop_h}x{crop_w} px / {patch} px patches ({src})"
        pinpoints = cfg.get("image_grid_pinpoints") or pre.get("image_grid_pinpoints") or DEFAULT_PINPOINTS

        def tokens(h: int, w: int) -> int:
            rows, cols = (crop_h // patch) * (h // crop_h), (crop_w // patch) * (w // crop_w)
            return rows * cols + rows + base

        best_pp = max(pinpoints, key=lambda hw: tokens(*hw))  # the first of the largest
        best = tokens(*best_pp)
        return best, f"anyres {best_pp[0]}x{best_pp[1]}: {best - base} crop and newline tokens + {base} base ({src})"
    if family in ("qwen2_vl", "qwen3_vl"):
        patch = int(pre.get("patch_size") or vc.get("patch_size") or (16 if family == "qwen3_vl" else 14))
        merge = int(pre.get("merge_size") or vc.get("spatial_merge_size") or 2)
        pixels = int(image_max_pixels)
        proc_max = pre.get("max_pixels") or (pre.get("size") or {}).get("longest_edge")
        if proc_max:
            pixels = min(pixels, int(proc_max))
        unit = (patch * merge) ** 2
        return pixels // unit + 2, f"image_max_pixels {pixels} / ({patch}x{merge})^2 + vision start/end"
    if family == "intern_vl":
        per_tile = int(cfg.get("image_seq_length") or 256)
        tiles = 13 if crop_to_patches or pre.get("crop_to_patches") else 1  # LLaMA-Factory: up to 12 tiles + a thumbnail
        return per_tile * tiles + 2, f"{tiles} tile{'s' if tiles > 1 else ''} x {per_tile} tokens + <img>/</img> ({src})"
    if family == "gemma3":
        per_image = int(cfg.get("mm_tokens_per_image") or 256)
        return per_image + 6, f"{per_image} soft tokens + begin/end of image and the newlines around them ({src})"
    return None


def check_cutoff(recipe: dict, recipe_path: str, plugin: str | None, facts: ModelFacts | None, datasets: list[DatasetFacts], report: CheckReport) -> None:
    if facts is None or facts.where == "missing":
        return
    pixels = recipe.get("image_max_pixels") or lf_default("image_max_pixels")
    tokens = image_tokens(facts, plugin, pixels, bool(setting(recipe, "crop_to_patches")))
    if not tokens:
        return
    per_image, how = tokens
    n_images = max([d.images_per_record for d in datasets if d.has_images] or [1])
    dataset_dir = str(setting(recipe, "dataset_dir"))
    answers = []
    for d in datasets:
        found = generation_config(d.name, recipe_path, dataset_dir)
        backend = section(found[1], "backend") if found else {}
        if isinstance(backend.get("max_new_tokens"), int):
            answers.append(backend["max_new_tokens"])
    answer = max(answers) if answers else ANSWER_TOKENS
    cutoff = int(recipe.get("cutoff_len") or lf_default("cutoff_len"))
    need = per_image * n_images + PROMPT_TOKENS
    what = f"{n_images} x {per_image} image tokens ({how}) + ~{PROMPT_TOKENS} prompt tokens = {need}"
    if cutoff < need:
        report.error(
            f"cutoff_len {cutoff} is too short for {what}: LLaMA-Factory truncates the prompt, cuts image tokens, and training "
            f'stops with "Image features and image tokens do not match". Use cutoff_len >= {need + answer} (prompt + answers up to {answer} tokens).'
        )
    elif 2 * need >= cutoff and cutoff < need + answer:
        report.warn(
            f"cutoff_len {cutoff} leaves {cutoff - need} tokens for answers after {what}: a pair whose longer answer exceeds that "
            f'gets its prompt truncated (data/processor/processor_utils.py infer_seqlen), cutting image tokens ("Image features and '
            f'image tokens do not match"). Use cutoff_len >= {need + answer}.'
        )


# LLaMA-Factory keys that change what the model sees, by the image plugins they matter for (None: every
# template). A build's backend takes the same keys, so generation can see what training sees.
INPUT_KEYS: dict[str, tuple[str, ...] | None] = {
    "image_max_pixels": ("qwen2_vl", "qwen3_vl", "llava_next", "intern_vl", "gemma3"),
    "crop_to_patches": ("intern_vl",),
    "image_do_pan_and_scan": ("gemma3",),
    "enable_thinking": None,  # only reasoning templates (qwen3_vl) read it
}
WHAT_CHANGES = {
    "image_max_pixels": "the image tokens or pixels",
    "crop_to_patches": "the tiles of each image (one, or a grid plus a thumbnail) and so its image tokens",
    "image_do_pan_and_scan": "the crops of each image and so its image tokens",
}


def _setting_of(cfg: dict, key: str):
    value = cfg.get(key)
    return lf_default(key) if value is None else value


def check_generation_pixels(recipe: dict, recipe_path: str, facts: ModelFacts | None, datasets: list[DatasetFacts], report: CheckReport) -> None:
    """Where image_max_pixels, crop_to_patches, image_do_pan_and_scan or enable_thinking decide what the model sees,
    generation (the build's backend keys) and training (the recipe's keys) should agree."""
    from seva_plugin.families import is_reasoning, pan_and_scan_problem, templates

    template = recipe.get("template")
    plugin = templates().get(template) if template else None
    if plugin == "gemma3" and _setting_of(recipe, "image_do_pan_and_scan"):
        problem = pan_and_scan_problem()
        if problem:
            report.error(problem)
    family = facts.plugin if facts is not None else None
    dataset_dir = str(setting(recipe, "dataset_dir"))
    for d in datasets:
        found = generation_config(d.name, recipe_path, dataset_dir)
        if not found:
            continue
        source, cfg = found
        backend = section(cfg, "backend")
        for key, plugins in INPUT_KEYS.items():
            built, trained = _setting_of(backend, key), _setting_of(recipe, key)
            if built == trained:
                continue
            if key == "enable_thinking":
                if template and is_reasoning(str(template)):
                    report.error(
                        f"dataset '{d.name}' is generated with enable_thinking {built} ({source}) but trained with {trained}: with the "
                        f"reasoning template '{template}' that changes the prompt (enable_thinking false appends an empty <think> block "
                        "to it), so the answers were written after another prompt than training shows. Set the same value in both."
                    )
            elif plugins is not None and family in plugins:
                report.warn(
                    f"dataset '{d.name}' is generated with {key} {built} ({source}) but trained with {trained}: "
                    f"for a {family} model that changes {WHAT_CHANGES[key]}, so training sees other inputs than generation did."
                )

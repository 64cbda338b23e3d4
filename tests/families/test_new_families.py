"""The families LLaMA-Factory users train now: Qwen2.5-VL, Qwen3-VL, InternVL3 and Gemma 3, each on its
tiny offline twin.

- SeVa builds with diffusion noise on each family's pixel layout (Qwen's flattened patches, InternVL's
  tiles), per image and seeded; ``seva inspect`` shows the views the model saw;
- CSR builds;
- each shipped recipe trains, through the real ``llamafactory-cli``, on pairs its twin generated;
- the template/model rule (check-recipe and ``seva build``) and the build-vs-recipe checks (thinking
  templates, ``enable_thinking``, ``image_max_pixels``, ``crop_to_patches``, pan-and-scan).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import yaml
from PIL import Image

from helpers import make_images, run_train
from seva_plugin.commands.check_recipe import check_recipe
from seva_plugin.errors import ConfigError
from seva_plugin.interfaces import CLEAN, View
from seva_plugin.pipeline.build import Build, build
from seva_plugin.pipeline.records import LoadedRecord, PromptRecord
from seva_plugin.pipeline.views import view_generator

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPES = os.path.join(ROOT, "recipes")

# family -> (twin builder, template, shipped recipe, backend keys the build and the training share)
FAMILIES = {
    "qwen2_5_vl": ("build_tiny_qwen2_5_vl", "qwen2_vl", "seva_qwen2_5_vl.yaml", {"image_max_pixels": 3136}),
    "qwen3_vl": ("build_tiny_qwen3_vl", "qwen3_vl_nothink", "seva_qwen3_vl.yaml", {"image_max_pixels": 4096}),
    # InternVL with LLaMA-Factory's crop_to_patches: several tiles an image (a grid plus a thumbnail)
    "internvl3": ("build_tiny_internvl3", "intern_vl", "seva_internvl3.yaml", {"crop_to_patches": True}),
    "gemma3": ("build_tiny_gemma3", "gemma3", "seva_gemma3.yaml", {}),
}
MODEL_TYPES = {"qwen2_5_vl": "qwen2_5_vl", "qwen3_vl": "qwen3_vl", "internvl3": "internvl", "gemma3": "gemma3"}
CPU = {
    "bf16": "false",
    "use_cpu": "true",
    "preprocessing_num_workers": 1,
    "dataloader_num_workers": 0,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "lora_rank": 8,
    "lora_alpha": 16,
    "plot_loss": "false",
}
NOISE = {"name": "diffusion_noise", "step": 500}


def quadrants(w: int, h: int) -> Image.Image:
    """Four flat colours: resizing keeps them exact, a scrambled layout does not."""
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2], a[: h // 2, w // 2 :] = (220, 30, 30), (30, 200, 30)
    a[h // 2 :, : w // 2], a[h // 2 :, w // 2 :] = (30, 30, 220), (240, 240, 40)
    return Image.fromarray(a)


def build_config(model: str, family: str, prompts: str, out, **changes) -> dict:
    _, template, _, shared = FAMILIES[family]
    return {
        "model": model,
        "template": template,
        "source": {"file": prompts},
        "augment": NOISE,
        "backend": {"name": "hf", "batch_size": 5, "max_new_tokens": 12, **shared},
        "output": {"dataset_dir": str(out), "name": "pairs"},
        **changes,
    }


# -- pixels: noise per image, seeded, on each family's layout ---------------------------------------
@pytest.mark.parametrize("family", list(FAMILIES))
def test_noise_is_per_image_and_seeded_on_the_familys_layout(family, twins):
    """Every row of an image (a Qwen patch, an InternVL tile) is noised with that image's own generator,
    ``view_generator(record seed, view, image index)``, whatever else is in the batch."""
    from seva_plugin.api import augmenter
    from seva_plugin.plugins.backends.hf import HfBackend
    from seva_plugin.plugins.backends.pixels import image_slices

    _, template, _, shared = FAMILIES[family]
    renderer = HfBackend(model=twins(family), template=template, **shared).renderer
    noise = augmenter("diffusion_noise", step=500)
    a, b, c = quadrants(120, 60), quadrants(60, 90), quadrants(64, 64)
    first = LoadedRecord(PromptRecord("r1", "<image><image>Colours?", ["a", "b"]), [a, b], 11)
    second = LoadedRecord(PromptRecord("r2", "<image>Colour?", ["c"]), [c], 22)

    ids, clean = renderer.view_inputs([first, second], CLEAN)
    _, noised = renderer.view_inputs([first, second], View(1, noise), (ids, clean))
    rows = renderer.image_rows([a, b]) + renderer.image_rows([c])
    slices = image_slices(clean, rows)
    assert len(slices) == 3 and slices[-1].stop == len(clean["pixel_values"])
    if family == "internvl3":  # the tile counts LLaMA-Factory drops, as the image processor itself counts them
        plugin = renderer.template.mm_plugin
        resized = plugin._regularize_images([a, b, c], image_max_pixels=renderer.processor.image_max_pixels, image_min_pixels=32 * 32)["images"]
        own = renderer.processor.image_processor(images=resized, crop_to_patches=True, min_patches=1, max_patches=12)["num_patches"]
        assert rows == [int(n) for n in own] and rows[0] > 1 and rows[1] > 1 and rows[0] != rows[1]
    for (seed, k), s in zip([(11, 0), (11, 1), (22, 0)], slices, strict=True):
        expected = noise(clean["pixel_values"][s], view_generator(seed, 1, k))
        assert np.array_equal(noised["pixel_values"][s].numpy(), expected.numpy())
    # the same record alone, or after another one, gets the same noise
    alone_ids, alone = renderer.view_inputs([second], CLEAN)
    _, alone_noised = renderer.view_inputs([second], View(1, noise), (alone_ids, alone))
    assert np.array_equal(alone_noised["pixel_values"].numpy(), noised["pixel_values"][slices[2]].numpy())


@pytest.mark.parametrize("family", list(FAMILIES))
def test_inspect_shows_the_views_the_model_saw(family, twins):
    """The gallery's clean view is the source image as the processor laid it out (so the layout is
    undone correctly: Qwen patches un-flattened, InternVL tiles back in their grid) and its noised view
    is that image's noised tensor, de-normalised; a second image of a record uses its own layout."""
    import torch

    from seva_plugin.commands.gallery import ViewMaker
    from seva_plugin.plugins.backends.pixels import image_slices

    _, template, _, shared = FAMILIES[family]
    maker = ViewMaker({"model": twins(family), "template": template, "augment": NOISE, "backend": {"name": "hf", **shared}})
    images = [quadrants(120, 60), quadrants(60, 90)]
    record = {"id": "a", "prompt": "<image><image>Colours?", "provenance": {"seed": 7}}
    (clean, noised), _ = maker.views(record, images)
    clean, noised = clean.images, noised.images
    assert len(clean) == len(noised) == 2
    for source, seen in zip(images, clean, strict=True):
        expected = np.asarray(source.resize(seen.size, Image.BICUBIC), dtype=float)
        # a scrambled layout is off by ~100; 3 allows for the two resamplings (LLaMA-Factory's, then the processor's
        # min_pixels enlargement in 28-px steps, which shows a 2:1 image at 3:2 with the real Qwen2.5-VL bounds)
        assert np.abs(np.asarray(seen, dtype=float) - expected).mean() < 3.0, seen.size

    loaded = LoadedRecord(PromptRecord("a", "<image><image>Colours?", []), images, 7)
    rows = maker.renderer.image_rows(images)
    _, mm = maker.renderer.view_inputs([loaded], CLEAN)
    slices = image_slices(mm, rows)
    ip = maker.processor.image_processor
    mean, std = np.asarray(ip.image_mean), np.asarray(ip.image_std)
    for k, (s, shown) in enumerate(zip(slices, noised, strict=True)):
        tensor = maker.augmenter(mm["pixel_values"][s], view_generator(7, 1, k))
        laid_out = {**mm, "pixel_values": torch.cat([mm["pixel_values"][: s.start], tensor, mm["pixel_values"][s.stop :]])}
        # the noised tensor, laid out as the clean view was (checked above) and de-normalised
        expected = maker.to_image(laid_out, s, k, images[k])
        assert np.array_equal(np.asarray(shown), np.asarray(expected))
        normalised = (np.asarray(shown, dtype=float) / 255 - mean) / std
        clean_normalised = (np.asarray(clean[k], dtype=float) / 255 - mean) / std
        assert np.abs(normalised - clean_normalised).mean() > 0.2  # visibly noised
    other = maker.views({**record, "provenance": {"seed": 8}}, images)[0][1].images
    assert np.asarray(other[0]).tolist() != np.asarray(noised[0]).tolist()


# -- builds and training ---------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_shipped_recipe_trains_on_seva_pairs_from_its_twin(family, twins, prompts, tmp_path):
    """SeVa pairs (diffusion noise) from the twin, then the shipped recipe through the real
    llamafactory-cli. Overrides touch only what cannot run here, plus the keys the build shares."""
    _, template, recipe, shared = FAMILIES[family]
    model = twins(family)
    result = build(build_config(model, family, prompts, tmp_path / "data"), progress=False)
    assert result.kept >= 2, result.summary()
    conf = yaml.safe_load(open(os.path.join(RECIPES, recipe)))
    assert conf["template"] == template  # the recipe trains with the template the build generated with
    out = tmp_path / "adapter"
    trained = run_train(
        os.path.join(RECIPES, recipe), model_name_or_path=model, dataset_dir=tmp_path / "data", dataset="pairs", output_dir=out, **CPU, **shared
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    config = json.load(open(out / "adapter_config.json"))
    assert (out / "adapter_model.safetensors").stat().st_size > 0
    assert config["lora_dropout"] == conf["lora_dropout"]  # the recipe's own value, not overridden
    assert not any(p in m for m in config["target_modules"] for p in ("vision", "visual", "projector", "merger"))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_csr_builds(family, twins, tiny_clip, tmp_path):
    names = make_images(tmp_path / "images", 2)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "image": f"images/{n}", "question": "Describe the image."}) + "\n" for i, n in enumerate(names)))
    strategy = {"name": "csr", "clip_model": tiny_clip, "num_proposals": 2, "max_sentence_tokens": 4, "max_response_chars": 24}
    config = build_config(twins(family), family, str(prompts), tmp_path / "data", strategy=strategy)
    result = build(config, progress=False)
    rows = [json.loads(line) for line in open(result.data_file)]
    assert result.kept == len(rows) >= 1, result.summary()
    assert all(r["provenance"]["strategy"] == "csr" and r["chosen"]["value"] != r["rejected"]["value"] for r in rows)


# -- the template/model rule: check-recipe and seva build -------------------------------------------
def model_dir(path, model_type: str) -> str:
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as fh:
        json.dump({"model_type": model_type}, fh)
    return str(path)


def recipe_file(tmp_path, **changes) -> str:
    data = tmp_path / "data"
    os.makedirs(data, exist_ok=True)
    entry = {
        "file_name": "pairs.jsonl",
        "formatting": "sharegpt",
        "ranking": True,
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "images": "images"},
    }
    (data / "dataset_info.json").write_text(json.dumps({"pairs": entry}))
    (data / "pairs.jsonl").write_text("")
    recipe = {
        "stage": "dpo", "do_train": True, "finetuning_type": "lora", "lora_target": "all", "pref_beta": 0.1, "pref_loss": "sigmoid",
        "dataset_dir": str(data), "dataset": "pairs", "cutoff_len": 4096, "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 1, "learning_rate": 1.0e-5, "num_train_epochs": 1.0, "bf16": False, "use_cpu": True,
        **changes,
    }  # fmt: skip
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def manifest(tmp_path, template: str, **backend):
    """A built dataset's manifest: what the pairs were generated with."""
    (tmp_path / "data" / "pairs.manifest.json").write_text(json.dumps({"config": {"template": template, "backend": {"name": "hf", **backend}}}))


WRONG = {"qwen2_5_vl": "llava", "qwen3_vl": "qwen2_vl", "internvl3": "gemma3", "gemma3": "intern_vl"}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_checks_its_templates(family, tmp_path):
    """check-recipe and seva build both refuse a template of another family, before any model loads,
    and accept every template of the family (both Qwen3-VL templates)."""
    from seva_plugin.families import FAMILIES as SHIPPED
    from seva_plugin.families import templates_for

    model = model_dir(tmp_path / family, MODEL_TYPES[family])
    shipped = next(f for f in SHIPPED if MODEL_TYPES[family] in f.model_types)
    for template in shipped.templates:
        report = check_recipe(recipe_file(tmp_path, model_name_or_path=model, template=template))
        assert not [e for e in report.errors if "does not fit" in e], report.errors
        assert template in templates_for(MODEL_TYPES[family])
    report = check_recipe(recipe_file(tmp_path, model_name_or_path=model, template=WRONG[family]))
    assert [e for e in report.errors if f"template '{WRONG[family]}'" in e and "does not fit" in e and f"model_type {MODEL_TYPES[family]}" in e]
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"id": "a", "image": "x.png", "question": "q"}) + "\n")
    config = {"model": model, "source": {"file": str(prompts)}, "output": {"dataset_dir": str(tmp_path / "built"), "name": "x"}}
    with pytest.raises(ConfigError, match=f"does not fit .*model_type {MODEL_TYPES[family]}.*Templates for it: .*{shipped.templates[0]}"):
        Build({**config, "template": WRONG[family]})
    Build({**config, "template": shipped.templates[0]})  # the family's own template passes


def test_llava_with_a_qwen_template_is_refused_before_the_model_loads(tiny_llava, tmp_path):
    """Before this check the build crashed mid-way: 'CLIPImageProcessor' object has no attribute 'merge_size'."""
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"id": "a", "image": "x.png", "question": "q"}) + "\n")
    with pytest.raises(ConfigError, match="template 'qwen2_vl' .* does not fit .*model_type llava.*Templates for it: llava"):
        Build({"model": tiny_llava, "template": "qwen2_vl", "source": {"file": str(prompts)}, "output": {"dataset_dir": str(tmp_path / "d"), "name": "x"}})


@pytest.mark.parametrize(
    "model, template, fits",
    [
        ("Qwen/Qwen3-VL-4B-Instruct", "qwen3_vl_nothink", True),
        ("Qwen/Qwen3-VL-4B-Instruct", "qwen3_vl", True),  # the same image plugin; check-recipe warns about the chat format
        ("Qwen/Qwen3-VL-4B-Instruct", "qwen2_vl", False),
        ("OpenGVLab/InternVL3-8B-hf", "qwen2_vl", False),
        ("google/gemma-3-4b-it", "intern_vl", False),
        ("llava-hf/llava-1.5-7b-hf", "qwen2_vl", False),
        ("someone/not-in-the-table", "qwen2_vl", True),  # nothing known: left to LLaMA-Factory
    ],
)
def test_build_judges_a_hub_id_not_downloaded_by_llamafactorys_table(model, template, fits, monkeypatch):
    import seva_plugin.families as families

    monkeypatch.setattr(families, "model_type_of", lambda m: None)  # as if not in the Hugging Face cache
    if fits:
        families.check_model_template(model, template)
    else:
        with pytest.raises(ConfigError, match=f"template '{template}' .*does not fit {model}.*Use template"):
            families.check_model_template(model, template)


@pytest.mark.parametrize("generated, trained", [("qwen3_vl", "qwen3_vl_nothink"), ("qwen3_vl_nothink", "qwen3_vl")])
def test_thinking_and_non_thinking_templates_are_not_mixed(generated, trained, tmp_path):
    path = recipe_file(tmp_path, model_name_or_path=model_dir(tmp_path / "m", "qwen3_vl"), template=trained)
    manifest(tmp_path, generated)
    report = check_recipe(path)
    (msg,) = [e for e in report.errors if "is generated with template" in e]
    assert f"'{generated}'" in msg and f"'{trained}'" in msg and "'qwen3_vl' is a thinking template" in msg
    manifest(tmp_path, trained)
    assert not [e for e in check_recipe(path).errors if "is generated with" in e]


def test_enable_thinking_must_match_for_a_thinking_template(tmp_path):
    path = recipe_file(tmp_path, model_name_or_path=model_dir(tmp_path / "m", "qwen3_vl"), template="qwen3_vl", enable_thinking=False)
    manifest(tmp_path, "qwen3_vl")  # the build's default: enable_thinking true
    assert [e for e in check_recipe(path).errors if "enable_thinking True" in e and "trained with False" in e]
    manifest(tmp_path, "qwen3_vl", enable_thinking=False)
    assert not [e for e in check_recipe(path).errors if "enable_thinking" in e]


@pytest.mark.parametrize(
    "model_type, template, key, built, trained",
    [
        ("qwen3_vl", "qwen3_vl_nothink", "image_max_pixels", 262144, 589824),
        ("internvl", "intern_vl", "image_max_pixels", 589824, 262144),
        ("internvl", "intern_vl", "crop_to_patches", False, True),
        ("gemma3", "gemma3", "image_max_pixels", 589824, 65536),
    ],
)
def test_generation_and_training_inputs_compared(model_type, template, key, built, trained, tmp_path):
    path = recipe_file(tmp_path, model_name_or_path=model_dir(tmp_path / "m", model_type), template=template, **{key: trained})
    manifest(tmp_path, template, **{key: built})
    report = check_recipe(path)
    assert [w for w in report.warnings if f"generated with {key} {built}" in w and f"trained with {trained}" in w], report.lines()
    manifest(tmp_path, template, **{key: trained})
    assert not [w for w in check_recipe(path).warnings if "is generated with" in w]


def test_pan_and_scan_is_refused_while_llamafactory_cannot_run_it(tmp_path):
    """LLaMA-Factory 0.9.5 indexes Gemma 3's num_crops as a nested list; transformers 5 returns a 1-D tensor."""
    from seva_plugin.families import pan_and_scan_problem
    from seva_plugin.plugins.backends.hf import HfBackend

    problem = pan_and_scan_problem()
    if problem is None:
        pytest.skip("the installed LLaMA-Factory runs pan-and-scan")
    report = check_recipe(recipe_file(tmp_path, model_name_or_path=model_dir(tmp_path / "m", "gemma3"), template="gemma3", image_do_pan_and_scan=True))
    assert problem in report.errors
    with pytest.raises(ConfigError, match="image_do_pan_and_scan does not work"):
        HfBackend(model="unused", template="gemma3", image_do_pan_and_scan=True)


def test_gemma3_crops_are_counted_per_image(twins):
    """Gemma 3's pan-and-scan layout (the image, then its crops: one begin-of-image token each in the
    prompt) gives each image its rows, for when LLaMA-Factory runs it."""
    from seva_plugin.plugins.backends.hf import HfBackend
    from seva_plugin.plugins.backends.pixels import image_slices, rows_per_image

    processor = HfBackend(model=twins("gemma3"), template="gemma3").renderer.processor
    seq = processor.full_image_sequence
    with_crops = f"Here is the original image {seq} and here are some crops to help you see better {seq} {seq}"
    assert [rows_per_image("gemma3", e, processor) for e in (seq, with_crops)] == [1, 3]
    mm = {"pixel_values": np.zeros((4, 3, 32, 32))}
    assert image_slices(mm, [3, 1]) == [slice(0, 3), slice(3, 4)]
    with pytest.raises(ValueError, match="4 rows but the images' layout says 3"):
        image_slices(mm, [2, 1])


# -- the twins themselves ---------------------------------------------------------------------------
@pytest.mark.parametrize("family", list(FAMILIES))
def test_twin_is_deterministic_tiny_and_of_its_family(family, twins, tmp_path):
    import hashlib

    import seva_plugin.dev.tiny_models as tiny

    first, again = twins(family), getattr(tiny, FAMILIES[family][0])(tmp_path / "again")  # the session twin takes the defaults

    def digest(folder):
        return hashlib.sha256(open(os.path.join(folder, "model.safetensors"), "rb").read()).hexdigest()

    assert digest(first) == digest(again)
    config = json.load(open(os.path.join(first, "config.json")))
    assert config["model_type"] == MODEL_TYPES[family]
    text = config.get("text_config") or config
    assert text.get("head_dim", text["hidden_size"] // text["num_attention_heads"]) >= 32  # vLLM's CPU attention needs 32 or more
    assert os.path.getsize(os.path.join(first, "model.safetensors")) < 8 * 2**20


# -- backend vllm (test_both_backends.py builds every family on both) -------------------------------
def _vllm_serves(family: str) -> bool:
    from seva_plugin.plugins.backends.vllm_inputs import EMBEDDING_FORMS

    return MODEL_TYPES[family] in EMBEDDING_FORMS


def test_internvl_prompt_for_vllm_keeps_one_placeholder_an_image_and_no_markers():
    """vLLM writes <img> and </img> around each InternVL placeholder itself: LLaMA-Factory's
    ``<img> CONTEXT*n </img>`` becomes one CONTEXT, so vLLM's expansion gives LLaMA-Factory's ids again."""
    from seva_plugin.plugins.backends.vllm_inputs import collapse_images

    img, ctx, end = 7, 9, 8
    ids = [1, img, ctx, ctx, ctx, end, 2, img, ctx, ctx, end, 3]
    assert collapse_images(ids, ctx, [3, 2], (img, end)) == [1, ctx, 2, ctx, 3]
    assert collapse_images(ids, ctx, [3, 2]) == [1, img, ctx, end, 2, img, ctx, end, 3]  # other families: unchanged rule


@pytest.mark.parametrize("family", list(FAMILIES))
def test_families_vllm_does_not_serve_are_refused_and_documented(family, twins):
    """A family backend vllm does not serve stops before any engine starts, and docs/recipes.md's
    family table says why (every family vLLM 0.26 knows runs with backend vllm in the tests, or the
    docs say why not)."""
    if _vllm_serves(family):
        pytest.skip("served: test_both_backends.py builds it on vllm")
    pytest.importorskip("vllm")
    from seva_plugin.plugins.backends.vllm import VllmBackend

    with pytest.raises(ConfigError, match="does not serve"):
        VllmBackend(model=twins(family), template=FAMILIES[family][1])
    from seva_plugin.families import FAMILIES as SHIPPED

    name = next(f.name for f in SHIPPED if MODEL_TYPES[family] in f.model_types)
    table = open(os.path.join(ROOT, "docs", "recipes.md"), encoding="utf-8").read()
    (row,) = [line for line in table.splitlines() if line.startswith(f"| {name} ")]
    assert "no:" in row.split("|")[3], row  # the vllm column gives the reason

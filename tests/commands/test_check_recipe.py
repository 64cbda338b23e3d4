"""`seva check-recipe`: every shipped recipe passes, and each trap is caught with a message that says what to do.

Fast: no model is loaded. Models are tiny local folders holding only a config.json, datasets are
dataset_info.json entries with empty (but present) files.
"""

from __future__ import annotations

import glob
import json
import os

import pytest
import yaml

from helpers import REPO as ROOT  # noqa: E402
from seva_plugin.commands.check_recipe import CheckReport, check_recipe, find_build_config, main

RECIPES = sorted(glob.glob(os.path.join(ROOT, "recipes", "*.yaml")))
SEVA_COLUMNS = {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "images": "images"}


def entry(name: str, ranking: bool = True, **extra) -> dict:
    out = {"file_name": f"{name}.jsonl", "formatting": "sharegpt", "columns": dict(SEVA_COLUMNS)}
    if ranking:
        out["ranking"] = True
    else:
        out["columns"] = {"messages": "conversations", "images": "images"}
    out.update(extra)
    return out


def dataset_dir(path, entries: dict, files: bool = True) -> str:
    """A dataset_dir with these dataset_info.json entries and, for file entries, empty data files."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "dataset_info.json"), "w") as fh:
        json.dump(entries, fh)
    if files:
        for e in entries.values():
            if "file_name" in e:
                open(os.path.join(path, e["file_name"]), "w").close()
    return str(path)


def model_dir(path, model_type: str = "llava", **config) -> str:
    os.makedirs(path, exist_ok=True)
    cfg = {"model_type": model_type, **config}
    if model_type in ("llava", "llava_next"):
        cfg.setdefault("vision_config", {"model_type": "clip_vision_model", "image_size": 336, "patch_size": 14})
        cfg.setdefault("vision_feature_select_strategy", "default")
    with open(os.path.join(path, "config.json"), "w") as fh:
        json.dump(cfg, fh)
    return str(path)


@pytest.fixture
def make(tmp_path, monkeypatch):
    """make(**changes) -> (report, recipe_path): a valid small DPO recipe, changed, then checked."""
    monkeypatch.delenv("ALLOW_EXTRA_ARGS", raising=False)

    def _make(overrides: list[str] | None = None, drop: tuple = (), **changes) -> tuple[CheckReport, str]:
        recipe = {
            "model_name_or_path": model_dir(tmp_path / "model"),
            "stage": "dpo",
            "do_train": True,
            "finetuning_type": "lora",
            "lora_target": "all",
            "pref_beta": 0.1,
            "pref_loss": "sigmoid",
            "dataset_dir": dataset_dir(tmp_path / "data", {"pairs": entry("pairs")}),
            "dataset": "pairs",
            "template": "llava",
            "cutoff_len": 2048,
            "output_dir": str(tmp_path / "out"),
            "per_device_train_batch_size": 1,
            "learning_rate": 1.0e-5,
            "num_train_epochs": 1.0,
            "bf16": False,
            "use_cpu": True,
        }
        recipe.update(changes)
        for key in drop:
            recipe.pop(key)
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump(recipe))
        return check_recipe(str(path), overrides), str(path)

    return _make


def one(messages: list[str], *needles: str) -> str:
    """The single message that holds every needle; fails with all messages shown otherwise."""
    hits = [m for m in messages if all(n in m for n in needles)]
    assert len(hits) == 1, f"expected one message with {needles}, got: {messages}"
    return hits[0]


# -- shipped recipes ----------------------------------------------------------------------------


def test_recipes_are_shipped():
    names = {os.path.basename(p) for p in RECIPES}
    assert {"seva_llava.yaml", "seva_llava_13b.yaml", "seva_llava_next.yaml", "seva_qwen2_vl.yaml", "seva_llava_mix_rlhf_v.yaml"} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=os.path.basename)
def test_shipped_recipe_passes(recipe, tmp_path):
    from omegaconf import OmegaConf

    conf = OmegaConf.to_container(OmegaConf.load(recipe))
    ranking = conf.get("stage", "sft") in ("dpo", "rm")
    names = [n.strip() for n in str(conf["dataset"]).split(",")]
    data = dataset_dir(tmp_path / "data", {n: entry(n, ranking) for n in names})
    report = check_recipe(recipe, [f"dataset_dir={data}"])
    assert report.errors == [], report.lines()
    # the data each SeVa recipe trains on is generated with the same model and template
    assert not [w for w in report.warnings if "is generated" in w], report.warnings


@pytest.mark.parametrize("recipe", [r for r in RECIPES if os.path.basename(r).startswith("seva_")], ids=os.path.basename)
def test_seva_recipes_have_build_configs(recipe):
    from omegaconf import OmegaConf

    conf = OmegaConf.to_container(OmegaConf.load(recipe))
    info = json.load(open(os.path.join(ROOT, "data_templates", "dataset_info.json")))
    for name in str(conf["dataset"]).split(","):
        found = find_build_config(name.strip(), recipe)
        assert found or name.strip() in info, f"{name} has neither a build config nor a data_templates/dataset_info.json entry"
        if found:
            assert os.path.basename(found[0]) == f"{name.strip()}.yaml"
            assert found[1]["output"]["name"] == name.strip()
            assert found[1]["output"]["dataset_dir"] == conf["dataset_dir"]


def test_build_configs_parse():
    from seva_plugin.pipeline.config import load_config

    paths = sorted(glob.glob(os.path.join(ROOT, "data_templates", "*.yaml")))
    paths = [p for p in paths if not os.path.basename(p).startswith("eval_")]  # seva eval's configs: tests/eval/test_eval_config.py
    assert {"seva_llava_t500.yaml", "seva_llava_t800.yaml"} <= {os.path.basename(p) for p in paths}
    for path in paths:
        cfg = load_config(path)
        assert os.path.basename(path) == f"{cfg.output['name']}.yaml"
    t800 = load_config(os.path.join(ROOT, "data_templates", "seva_llava_t800.yaml"))
    assert t800.augment == {"name": "diffusion_noise", "step": 800}
    assert t800.source["preset"] == "seva" and t800.source["format"] == "llava"


def test_official_hyperparameters():
    r = yaml.safe_load(open(os.path.join(ROOT, "recipes", "seva_llava.yaml")))
    assert r["model_name_or_path"] == "llava-hf/llava-1.5-7b-hf" and r["template"] == "llava"
    assert (r["lora_rank"], r["lora_alpha"], r["lora_dropout"]) == (1024, 2048, 0.05)
    assert (r["pref_loss"], r["pref_beta"], r["pref_ftx"]) == ("sigmoid", 0.1, 0.0)
    assert (r["learning_rate"], r["lr_scheduler_type"], r["warmup_steps"], r["weight_decay"]) == (2e-6, "cosine", 0, 0.0)
    assert r["per_device_train_batch_size"] * r["gradient_accumulation_steps"] * 8 == 128
    assert r["num_train_epochs"] == 2.0 and r["cutoff_len"] == 2048 and r["bf16"] is True
    assert r["freeze_vision_tower"] is True and r["freeze_multi_modal_projector"] is True


def test_template_dataset_info_matches_llamafactory():
    info = json.load(open(os.path.join(ROOT, "data_templates", "dataset_info.json")))
    assert info["rlhf_v"] == {"hf_hub_url": "llamafactory/RLHF-V", "ranking": True, "formatting": "sharegpt", "columns": SEVA_COLUMNS}
    assert info["rlaif_v"]["hf_hub_url"] == "openbmb/RLAIF-V-Dataset" and info["rlaif_v"]["ranking"] is True
    assert "rlhf_v_local" not in info  # the mixing recipe uses the Hub's rlhf_v as it is


# -- the control, then each trap ----------------------------------------------------------------


def test_valid_recipe_passes(make):
    report, _ = make()
    assert report.errors == [], report.lines()
    assert report.ok


def test_unknown_key_with_did_you_mean(make):
    report, _ = make(lerning_rate=1e-5)
    msg = one(report.errors, "unknown key 'lerning_rate'")
    assert "Did you mean 'learning_rate'?" in msg


def test_allow_extra_args_downgrades_unknown_keys(make, monkeypatch):
    monkeypatch.setenv("ALLOW_EXTRA_ARGS", "1")
    report, _ = make(lerning_rate=1e-5)
    assert report.errors == [], report.lines()
    one(report.warnings, "unknown key 'lerning_rate' is ignored")


def test_missing_local_model(make, tmp_path):
    report, _ = make(model_name_or_path=str(tmp_path / "no" / "such" / "model"))
    one(report.errors, "is not a folder here")


def test_bad_choice_with_did_you_mean(make):
    report, _ = make(finetuning_type="lora", stage="dop")
    msg = one(report.errors, "stage: 'dop'")
    assert "Did you mean 'dpo'?" in msg


def test_unregistered_seva_dataset_gets_build_command(make, tmp_path):
    data = dataset_dir(tmp_path / "empty", {})
    report, _ = make(dataset="seva_llava_t500", dataset_dir=data)
    msg = one(report.errors, "'seva_llava_t500' is not registered")
    assert "seva build data_templates/seva_llava_t500.yaml" in msg
    assert f"output.dataset_dir={data}" in msg  # lands where the recipe looks


def test_unregistered_dataset_did_you_mean(make):
    report, _ = make(dataset="pair")
    msg = one(report.errors, "'pair' is not registered")
    assert "Did you mean 'pairs'?" in msg
    assert "seva build" not in msg


def test_missing_dataset_info_gets_build_command(make, tmp_path):
    os.makedirs(tmp_path / "nothing")
    report, _ = make(dataset="seva_llava_t800", dataset_dir=str(tmp_path / "nothing"))
    msg = one(report.errors, "no dataset_info.json")
    assert "seva build data_templates/seva_llava_t800.yaml" in msg


def test_missing_file(make, tmp_path):
    data = dataset_dir(tmp_path / "nofile", {"pairs": entry("pairs")}, files=False)
    report, _ = make(dataset_dir=data)
    msg = one(report.errors, "file not found")
    assert os.path.join(data, "pairs.jsonl") in msg


def test_missing_seva_file_gets_build_command(make, tmp_path):
    data = dataset_dir(tmp_path / "nofile", {"seva_llava_t500": entry("seva_llava_t500")}, files=False)
    report, _ = make(dataset="seva_llava_t500", dataset_dir=data)
    assert "seva build data_templates/seva_llava_t500.yaml" in one(report.errors, "file not found")


def test_ranking_missing_for_dpo(make, tmp_path):
    data = dataset_dir(tmp_path / "unranked", {"pairs": entry("pairs", ranking=False)})
    report, _ = make(dataset_dir=data)
    msg = one(report.errors, '"ranking": true', "stage dpo")
    assert "not applicable in the current training stage" in msg


def test_ranking_set_with_sft_stage(make):
    report, _ = make(stage="sft", drop=("pref_beta", "pref_loss"))
    assert "stage: dpo" in one(report.errors, "preference set")


@pytest.mark.parametrize("loss", ["ipo", "hinge", "kto_pair"])
def test_pref_loss_silently_sigmoid(make, loss):
    report, _ = make(pref_loss=loss)
    msg = one(report.errors, f"pref_loss: {loss}")
    assert "silently" in msg and "sigmoid" in msg and "trl" in msg


@pytest.mark.parametrize("loss", ["sigmoid", "orpo", "simpo"])
def test_pref_loss_really_implemented(make, loss):
    report, _ = make(pref_loss=loss)
    assert not [e for e in report.errors if "pref_loss" in e], report.errors


def test_interleave_once_rejected(make, tmp_path):
    data = dataset_dir(tmp_path / "two", {"a": entry("a"), "b": entry("b")})
    report, _ = make(dataset_dir=data, dataset="a,b", mix_strategy="interleave_once", interleave_probs="0.5,0.5")
    msg = one(report.errors, "mix_strategy: interleave_once")
    assert "all_exhausted_without_replacement" in msg and "datasets" in msg and "interleave_under" in msg


def test_interleave_under_accepted(make, tmp_path):
    data = dataset_dir(tmp_path / "two", {"a": entry("a"), "b": entry("b")})
    report, _ = make(dataset_dir=data, dataset="a,b", mix_strategy="interleave_under", interleave_probs="0.7,0.3")
    assert report.errors == [], report.lines()


def test_interleave_probs_count_mismatch(make, tmp_path):
    data = dataset_dir(tmp_path / "two", {"a": entry("a"), "b": entry("b")})
    report, _ = make(dataset_dir=data, dataset="a,b", mix_strategy="interleave_over", interleave_probs="0.5,0.3,0.2")
    msg = one(report.errors, "interleave_probs has 3 value(s)")
    assert "dataset lists 2 (a, b)" in msg


def test_interleave_probs_with_concat(make, tmp_path):
    data = dataset_dir(tmp_path / "two", {"a": entry("a"), "b": entry("b")})
    report, _ = make(dataset_dir=data, dataset="a,b", interleave_probs="0.5,0.5")
    assert "mix_strategy: interleave_under" in one(report.errors, "mix_strategy is concat")


def test_mixing_local_paths_with_hub_images(make, tmp_path):
    data = dataset_dir(
        tmp_path / "mix",
        {"pairs": entry("pairs"), "rlhf_v": {"hf_hub_url": "llamafactory/RLHF-V", "ranking": True, "formatting": "sharegpt", "columns": SEVA_COLUMNS}},
    )
    report, _ = make(dataset_dir=data, dataset="pairs,rlhf_v")
    msg = one(report.errors, "The features can't be aligned")
    assert "mixing pairs (image paths) with rlhf_v (images embedded" in msg
    assert "store pairs's images embedded" in msg and "output.format: parquet" in msg
    # a seva build (it has a manifest) can be converted without generating again
    open(os.path.join(data, "pairs.manifest.json"), "w").write("{}")
    report, _ = make(dataset_dir=data, dataset="pairs,rlhf_v")
    msg = one(report.errors, "The features can't be aligned")
    assert f"seva export {data} --name pairs --to parquet --out {data} --out-name pairs_parquet" in msg


def write_parquet_set(folder, image_type: str) -> None:
    """One shard whose images are embedded (``Image()`` structs) or paths (strings), as LLaMA-Factory loads it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(folder, exist_ok=True)
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())]) if image_type == "embedded" else pa.string()
    turn = pa.struct([("from", pa.string()), ("value", pa.string())])
    schema = pa.schema([("conversations", pa.list_(turn)), ("chosen", turn), ("rejected", turn), ("images", pa.list_(image))])
    pq.write_table(schema.empty_table(), os.path.join(folder, "train-00000-of-00001.parquet"))


def test_mixing_embedded_parquet_with_hub_images_passes(make, tmp_path):
    rlhf_v = {"hf_hub_url": "llamafactory/RLHF-V", "ranking": True, "formatting": "sharegpt", "columns": SEVA_COLUMNS}
    data = dataset_dir(tmp_path / "mix", {"pairs": entry("pairs", file_name="pairs/data"), "rlhf_v": rlhf_v}, files=False)
    write_parquet_set(tmp_path / "mix" / "pairs" / "data", "embedded")
    report, _ = make(dataset_dir=data, dataset="pairs,rlhf_v")
    assert not [m for m in report.errors if "aligned" in m], report.lines()
    # a Parquet set that stores paths does not mix: told from the schema, not the file extension
    write_parquet_set(tmp_path / "mix" / "pairs" / "data", "paths")
    report, _ = make(dataset_dir=data, dataset="pairs,rlhf_v")
    one(report.errors, "The features can't be aligned", "mixing pairs (image paths)")


def test_mixing_image_and_text_only_preference_sets_warns(make, tmp_path):
    text = {
        "file_name": "text.jsonl",
        "formatting": "sharegpt",
        "ranking": True,
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"},
    }
    data = dataset_dir(tmp_path / "mix", {"pairs": entry("pairs"), "more": entry("more"), "text": text})
    report, _ = make(dataset_dir=data, dataset="pairs,text")
    msg = one(report.warnings, "text-only")
    assert "image preference sets (pairs) with text-only ones (text)" in msg and "#6518" in msg and "#7157" in msg
    report, _ = make(dataset_dir=data, dataset="pairs,more")  # two image sets: nothing to warn about
    assert not [m for m in report.warnings if "text-only" in m]


def test_duplicate_dataset_warns(make):
    report, _ = make(dataset="pairs,pairs")
    assert "num_train_epochs" in one(report.warnings, "twice")


@pytest.mark.parametrize(
    "model_type, template, needle",
    [
        ("llava_next", "llava", "model_type llava_next"),
        ("llava", "qwen2_vl", "model_type llava"),
        ("qwen2_vl", "llava_next", "model_type qwen2_vl"),
    ],
)
def test_template_model_mismatch(make, tmp_path, model_type, template, needle):
    report, _ = make(model_name_or_path=model_dir(tmp_path / model_type, model_type), template=template)
    msg = one(report.errors, f"template '{template}'", "does not fit")
    assert needle in msg and "Templates for it" in msg


def test_text_template_on_vision_model(make):
    report, _ = make(template="vicuna")
    assert "This model does not support image input" in one(report.errors, "template 'vicuna' has no image support")


def test_unknown_template(make):
    report, _ = make(template="lava")
    assert "Did you mean 'llava'?" in one(report.errors, "template 'lava' does not exist")


def test_template_fit_from_hub_id(make):
    report, _ = make(model_name_or_path="llava-hf/llava-v1.6-mistral-7b-hf", template="llava")
    assert "Use template llava_next_mistral" in one(report.errors, "does not fit")
    one(report.warnings, "not in the Hugging Face cache", "llava_next family")


def test_other_chat_format_warns(make):
    report, _ = make(model_name_or_path="llava-hf/llava-v1.6-mistral-7b-hf", template="llava_next", cutoff_len=4096)
    assert report.errors == [], report.lines()
    one(report.warnings, "'llava_next_mistral'", "another chat format")


def test_cutoff_len_too_small_llava(make):
    report, _ = make(cutoff_len=512)
    msg = one(report.errors, "cutoff_len 512 is too short")
    assert "576 image tokens" in msg and "Image features and image tokens do not match" in msg and "cutoff_len >= 1216" in msg


def test_cutoff_len_tight_warns(make):
    report, _ = make(cutoff_len=1024)
    assert report.errors == [], report.lines()
    assert "cutoff_len >= 1216" in one(report.warnings, "cutoff_len 1024 leaves")


def test_cutoff_len_llava_next_anyres(make, tmp_path):
    model = model_dir(tmp_path / "next", "llava_next", image_grid_pinpoints=[[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]])
    report, _ = make(model_name_or_path=model, template="llava_next", cutoff_len=2048)
    assert "2928 image tokens" in one(report.errors, "cutoff_len 2048 is too short")
    report, _ = make(model_name_or_path=model, template="llava_next", cutoff_len=4096)
    assert report.errors == [], report.lines()


def test_cutoff_len_qwen2_vl_pixels(make, tmp_path):
    model = model_dir(tmp_path / "qwen", "qwen2_vl", vision_config={"patch_size": 14, "spatial_merge_size": 2})
    report, _ = make(model_name_or_path=model, template="qwen2_vl", cutoff_len=512, image_max_pixels=589824)
    assert "754 image tokens" in one(report.errors, "cutoff_len 512 is too short")  # 589824 / 28^2 + start/end
    report, _ = make(model_name_or_path=model, template="qwen2_vl", cutoff_len=512, image_max_pixels=65536)
    assert not [e for e in report.errors if "cutoff_len" in e], report.errors


def test_bf16_on_cpu_is_a_hint(make):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    report, _ = make(bf16=True, drop=("use_cpu",))
    assert report.errors == [], report.lines()
    assert "bf16=false use_cpu=true" in one(report.hints, "bf16: true")


def test_flash_attn_hint(make):
    report, _ = make(flash_attn="fa2")
    assert report.errors == []
    one(report.hints, "flash_attn: fa2")


def test_deepspeed_config_missing(make, tmp_path):
    report, _ = make(deepspeed=str(tmp_path / "ds_z3.json"))
    one(report.errors, "deepspeed: config file not found")


def test_output_dir_resume_and_refuse(make, tmp_path):
    os.makedirs(tmp_path / "out" / "checkpoint-20")
    os.makedirs(tmp_path / "out" / "checkpoint-100")
    report, _ = make()
    assert "overwrite_output_dir" in one(report.warnings, "checkpoint-100", "resume")
    done = tmp_path / "done"
    os.makedirs(done)
    (done / "adapter_model.safetensors").write_bytes(b"")
    report, _ = make(output_dir=str(done))
    one(report.errors, "already holds a trained model")


def test_empty_data_file_warns(make):
    report, _ = make()
    one(report.warnings, "pairs.jsonl is empty")


def test_value_types(make):
    report, _ = make(learning_rate="fast", do_train="yes")
    one(report.errors, "learning_rate: expected a number")
    one(report.errors, "do_train: expected true or false")


def test_provenance_mismatch_warns(make, tmp_path):
    data = dataset_dir(tmp_path / "built", {"seva_llava_t500": entry("seva_llava_t500")})
    report, _ = make(dataset="seva_llava_t500", dataset_dir=data, template="llava", model_name_or_path="llava-hf/llava-1.5-13b-hf")
    assert "off-policy" in one(report.warnings, "llava-1.5-7b-hf")


def test_generation_pixels_mismatch_warns(tmp_path):
    data = dataset_dir(tmp_path / "q", {"seva_qwen2_vl_t500": entry("seva_qwen2_vl_t500")})
    recipe = os.path.join(ROOT, "recipes", "seva_qwen2_vl.yaml")
    report = check_recipe(recipe, [f"dataset_dir={data}", "image_max_pixels=65536"])
    assert report.errors == [], report.lines()
    one(report.warnings, "generated with image_max_pixels 589824", "trained with 65536")


def test_first_record_image_checked(make, tmp_path):
    data = dataset_dir(tmp_path / "rec", {"pairs": entry("pairs")})
    row = {
        "conversations": [{"from": "human", "value": "<image>q"}],
        "chosen": {"from": "gpt", "value": "a"},
        "rejected": {"from": "gpt", "value": "b"},
        "images": ["missing.jpg"],
    }
    with open(os.path.join(data, "pairs.jsonl"), "w") as fh:
        fh.write(json.dumps(row) + "\n")
    report, _ = make(dataset_dir=data)
    one(report.warnings, "image 'missing.jpg'")


def test_overrides_apply(make, tmp_path):
    report, path = make()
    report = check_recipe(path, ["pref_loss=ipo"])
    one(report.errors, "pref_loss: ipo")


def test_missing_recipe():
    report = check_recipe("/nonexistent/recipe.yaml")
    one(report.errors, "recipe not found")


def test_main_exit_codes_and_prefixes(make, capsys):
    _, bad = make(lerning_rate=1e-5)
    assert main([bad]) == 1
    out = capsys.readouterr().out
    assert any(line.startswith("error: unknown key 'lerning_rate'") for line in out.splitlines())
    _, good = make(bf16=True, drop=("use_cpu",))
    assert main([good]) == 0
    out = capsys.readouterr().out
    assert not any(line.startswith("error:") for line in out.splitlines())
    assert main([good, "pref_loss=hinge"]) == 1

"""Dataset checks: registration in dataset_info.json, data files, mixing several sets, and where the pairs came from."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from seva_plugin.commands.check_recipe.build_configs import DATA_TEMPLATES, build_command, generation_config, template_entry
from seva_plugin.commands.check_recipe.facts import mix_facts, setting
from seva_plugin.commands.check_recipe.files import first_record, show
from seva_plugin.commands.check_recipe.image_storage import Storage, image_storage
from seva_plugin.commands.check_recipe.report import CheckReport, split_list
from seva_plugin.errors import did_you_mean
from seva_plugin.families import thinking_mismatch


@dataclass
class DatasetFacts:
    name: str
    hub: bool = False
    has_images: bool = False
    images_per_record: int = 1
    entry: dict | None = None
    image_storage: Storage | None = None  # paths | embedded; None: no images, or cannot be told
    text_only: bool = False  # no image, video or audio column


def check_datasets(recipe: dict, recipe_path: str, report: CheckReport, key: str = "dataset", planned: dict[str, dict] | None = None) -> list[DatasetFacts]:
    """``planned``: datasets that will be built before training (``seva iterate`` checks the recipe
    before round 0), by name with the ``dataset_info.json`` entry their build will write: checked
    as registered, their file not required yet."""
    from llamafactory.extras.constants import FILEEXT2TYPE

    planned = planned or {}

    names = split_list(recipe.get(key))
    if not names:
        if key == "dataset" and recipe.get("do_train"):
            report.error("no dataset: set `dataset: <name>` (a name registered in dataset_dir/dataset_info.json).")
        return []
    unique = list(dict.fromkeys(names))
    seen = set()
    for name in names:
        if name in seen:
            report.warn(
                f"{key} lists '{name}' twice: LLaMA-Factory loads each name once (data/loader.py keys datasets by name). To see pairs twice use "
                "num_train_epochs."
            )
        seen.add(name)
    stage = setting(recipe, "stage")
    dataset_dir = str(setting(recipe, "dataset_dir"))
    media_dir = str(recipe.get("media_dir") or dataset_dir)
    if dataset_dir == "ONLINE" or dataset_dir.startswith("REMOTE:"):
        report.warn(f"dataset_dir: {dataset_dir} is read from the hub at train time; the datasets were not checked.")
        return [DatasetFacts(n, hub=True) for n in unique]
    info_path = os.path.join(dataset_dir, "dataset_info.json")
    where = f"dataset_dir '{dataset_dir}'" + (
        "" if os.path.isabs(dataset_dir) else f" (resolved against the current directory {os.getcwd()}, as llamafactory-cli does)"
    )
    if not os.path.isfile(info_path) and not all(n in planned for n in unique):
        msg = f"no dataset_info.json in {where}."
        cmds = [c for c in (build_command(n, recipe_path, dataset_dir) for n in unique) if c]
        if cmds:
            msg += " Build the data first: " + "; ".join(f"`{c}`" for c in cmds) + " (each build writes its entry)."
        templ = [n for n in names if template_entry(n, recipe_path)]
        if templ:
            msg += f" Entries for {', '.join(templ)} are in {DATA_TEMPLATES}/dataset_info.json: copy it to {dataset_dir}/ before building."
        report.error(msg)
        return []
    try:
        info = {}
        if os.path.isfile(info_path):
            with open(info_path, encoding="utf-8") as fh:
                info = json.load(fh)
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        report.error(f"{info_path} is not valid JSON ({exc}).")
        return []

    facts = []
    for name in unique:
        entry = info.get(name, planned.get(name))
        if entry is None:
            msg = f"{key} '{name}' is not registered in {info_path}.{did_you_mean(name, info)}"
            cmd = build_command(name, recipe_path, dataset_dir)
            entry_file = template_entry(name, recipe_path)
            if cmd:
                msg += f" It has a build config but is not built yet: run `{cmd}` (it writes the data and its dataset_info.json entry)."
            elif entry_file:
                msg += f" Its entry is in {show(entry_file)}: copy it into {info_path}."
            report.error(msg)
            continue
        if not isinstance(entry, dict):
            report.error(f"{info_path}: entry '{name}' must be a JSON object.")
            continue
        fact = DatasetFacts(name, entry=entry)
        columns = entry.get("columns") or {}
        fact.has_images = bool(columns.get("images"))
        fact.text_only = not any(columns.get(k) for k in ("images", "videos", "audios"))
        hub_keys = [k for k in ("hf_hub_url", "ms_hub_url", "om_hub_url") if k in entry]
        ranking = bool(entry.get("ranking", False))
        formatting = entry.get("formatting", "alpaca")
        if formatting not in ("alpaca", "sharegpt", "openai"):
            report.error(f"{info_path}: '{name}' has formatting '{formatting}'; LLaMA-Factory knows alpaca, sharegpt, openai.")
        if stage in ("dpo", "rm") and not ranking:
            report.error(
                f"{key} '{name}' has no `\"ranking\": true` in {info_path}, which stage {stage} requires: LLaMA-Factory stops with "
                '"The dataset is not applicable in the current training stage." Preference data needs "ranking": true and '
                '"chosen"/"rejected" columns.'
            )
        elif stage not in ("dpo", "rm") and ranking:
            report.error(
                f"{key} '{name}' is a preference set (\"ranking\": true) but stage is {stage}: LLaMA-Factory refuses it. Preference pairs train with "
                "stage: dpo."
            )
        if ranking and stage in ("dpo", "rm") and formatting == "sharegpt" and not (columns.get("chosen") and columns.get("rejected")):
            report.error(f'{info_path}: \'{name}\' is a sharegpt ranking set but its columns lack "chosen" and "rejected".')
        if hub_keys:
            fact.hub = True
            fact.image_storage = "embedded" if fact.has_images else None  # as the hub's image sets store them
            report.hint(f"{key} '{name}' is downloaded from the hub ({entry[hub_keys[0]]}) when training starts; it was not checked here.")
        elif "script_url" in entry or "cloud_file_name" in entry:
            pass
        elif "file_name" not in entry:
            report.error(f"{info_path}: '{name}' has no file_name (nor hf_hub_url).")
        else:
            local = os.path.join(dataset_dir, entry["file_name"])
            if not os.path.exists(local) and name in planned:
                pass  # built before training
            elif not os.path.exists(local):
                msg = f"{key} '{name}': file not found: {local} (LLaMA-Factory: \"File {local} not found.\")."
                cmd = build_command(name, recipe_path, dataset_dir)
                if cmd:
                    msg += f" Build it: `{cmd}`."
                report.error(msg)
            else:
                files = [os.path.join(local, f) for f in sorted(os.listdir(local))] if os.path.isdir(local) else [local]
                exts = {os.path.splitext(f)[1][1:] for f in files}
                bad = [e for e in exts if e not in FILEEXT2TYPE]
                if not files:
                    report.error(f"{key} '{name}': {local} is an empty folder.")
                elif bad:
                    report.error(f"{key} '{name}': file type '.{bad[0]}' is not loadable; LLaMA-Factory reads {', '.join(FILEEXT2TYPE)}.")
                elif len({FILEEXT2TYPE[e] for e in exts}) > 1:
                    report.error(f"{key} '{name}': {local} mixes file types ({', '.join(sorted(exts))}); LLaMA-Factory needs one.")
                elif all(os.path.getsize(f) == 0 for f in files):
                    report.warn(f"{key} '{name}': {local} is empty; LLaMA-Factory has nothing to train on (a build that kept no pairs?).")
                else:
                    _check_first_record(name, files[0], entry, media_dir, fact, report)
                if files and not bad and fact.has_images:
                    fact.image_storage = image_storage(files[0], columns["images"])
        facts.append(fact)
        _check_provenance(recipe, recipe_path, name, dataset_dir, report)
    return facts


def _check_first_record(name: str, path: str, entry: dict, media_dir: str, fact: DatasetFacts, report: CheckReport) -> None:
    row = first_record(path)
    if row is None:
        return
    columns = dict(entry.get("columns") or {})
    if entry.get("formatting", "alpaca") == "sharegpt":
        columns.setdefault("messages", "conversations")
    missing = [f"{role} -> '{col}'" for role, col in columns.items() if col not in row]
    if missing:
        report.warn(f"dataset '{name}': the first record of {path} lacks the columns dataset_info.json maps ({', '.join(missing)}).")
    images = row.get(columns.get("images")) if columns.get("images") else None
    if isinstance(images, str):
        images = [images]
    if isinstance(images, list) and images:
        fact.images_per_record = len(images)
        first = images[0]
        if isinstance(first, str):
            joined = os.path.join(media_dir, first)
            if not os.path.isfile(joined) and not os.path.isfile(first):
                report.warn(
                    f"dataset '{name}': image '{first}' of the first record is neither under media_dir '{media_dir}' nor a path that exists; "
                    "training would fail to open it."
                )


def _check_provenance(recipe: dict, recipe_path: str, name: str, dataset_dir: str, report: CheckReport) -> None:
    """Compare the model/template the pairs were (or will be) generated with against the recipe's."""
    found = generation_config(name, recipe_path, dataset_dir)
    if not found:
        return
    source, cfg = found
    built_template, template = cfg.get("template"), recipe.get("template")
    if built_template and template and built_template != template:
        why = thinking_mismatch(str(built_template), str(template))
        report.error(
            f"dataset '{name}' is generated with template '{built_template}' ({source}) but trained with template '{template}': "
            + (why if why else "train with the format the answers were generated in (the official SeVa code mixed two templates; this plugin keeps one).")
        )
    built_model, model = cfg.get("model"), recipe.get("model_name_or_path")
    if built_model and model and os.path.basename(str(built_model).rstrip("/")).lower() != os.path.basename(str(model).rstrip("/")).lower():
        report.warn(
            f"dataset '{name}' is generated by '{built_model}' ({source}) but the recipe trains '{model}': SeVa pairs are the "
            "model's own answers; pairs from another model are off-policy."
        )


def _check_image_storage(facts: list[DatasetFacts], dataset_dir: str, report: CheckReport) -> None:
    """Image paths and embedded images cannot be mixed: LLaMA-Factory cannot align the two features."""
    paths = [f.name for f in facts if f.image_storage == "paths"]
    embedded = [f.name for f in facts if f.image_storage == "embedded"]
    if not (paths and embedded):
        return
    fixes = []
    for name in paths:
        if os.path.isfile(os.path.join(dataset_dir, f"{name}.manifest.json")):  # a seva build: convert it
            fixes.append(
                f"`seva export {dataset_dir} --name {name} --to parquet --out {dataset_dir} --out-name {name}_parquet` "
                f"and train on {name}_parquet (or rebuild {name} with `output.format: parquet`)"
            )
        else:
            fixes.append(f"store {name}'s images embedded (Parquet with an Image() column, as `output.format: parquet` writes)")
    report.error(
        f"mixing {', '.join(paths)} (image paths) with {', '.join(embedded)} (images embedded, as hub sets store them) fails in "
        'LLaMA-Factory: "The features can\'t be aligned because the key _images ..." (streaming does not help). '
        f'Embed the images of every set in the mix: {"; ".join(fixes)} (docs/recipes.md, "Mixing in other sets").'
    )


def _check_modalities(facts: list[DatasetFacts], stage: str, report: CheckReport) -> None:
    """Image preference sets mixed with text-only ones hang or crash LLaMA-Factory's DPO."""
    images = [f.name for f in facts if f.has_images]
    text = [f.name for f in facts if f.text_only]
    if images and text and stage in ("dpo", "rm", "kto"):
        report.warn(
            f"dataset mixes image preference sets ({', '.join(images)}) with text-only ones ({', '.join(text)}): LLaMA-Factory is "
            f"known to hang or crash on such mixes in {stage} training (hiyouga/LLaMA-Factory#6518, #7157). Train on the image sets only, "
            "or train the text-only pairs in a separate run."
        )


def check_mixing(recipe: dict, facts: list[DatasetFacts], report: CheckReport) -> None:
    names = list(dict.fromkeys(split_list(recipe.get("dataset"))))
    eval_names = list(dict.fromkeys(split_list(recipe.get("eval_dataset"))))
    strategy = setting(recipe, "mix_strategy")
    probs_raw = recipe.get("interleave_probs")
    mix = mix_facts()
    if isinstance(strategy, str) and strategy.startswith("interleave") and mix["map"] and mix["accepted"]:
        stopping = mix["map"].get(strategy)
        if stopping is not None and stopping not in mix["accepted"]:
            msg = (
                f"mix_strategy: {strategy} maps to stopping_strategy '{stopping}' ({mix.get('map_line', 'LLaMA-Factory')}), which the "
                f"installed datasets {mix['datasets']} rejects (it accepts {', '.join(sorted(mix['accepted']))}). "
                f"Use interleave_under (stop when the first set runs out) or interleave_over (oversample until every set was seen)."
            )
            if len(names) > 1 or len(eval_names) > 1:
                report.error(msg)
            else:
                report.warn(msg + " It only bites once two datasets are mixed.")
    if probs_raw is not None:
        try:
            probs = [float(p) for p in split_list(probs_raw)]
        except ValueError:
            report.error(f"interleave_probs: '{probs_raw}' must be comma-separated numbers, one per dataset (e.g. 0.7,0.3).")
            probs = None
        if probs is not None:
            if strategy == "concat":
                report.error(
                    'interleave_probs is set but mix_strategy is concat: LLaMA-Factory refuses it ("`interleave_probs` is only valid for interleaved '
                    'mixing"). Set mix_strategy: interleave_under or interleave_over.'
                )
            for label, lst in (("dataset", names), ("eval_dataset", eval_names)):
                if lst and len(lst) != len(probs):
                    report.error(
                        f"interleave_probs has {len(probs)} value(s) ({','.join(map(str, probs))}) but {label} lists {len(lst)} "
                        f"({', '.join(lst)}): LLaMA-Factory needs one probability per dataset, in the same order."
                    )
            if any(p < 0 for p in probs) or abs(sum(probs) - 1.0) > 1e-6:
                report.error(
                    f"interleave_probs {','.join(map(str, probs))} must be non-negative and sum to 1 (they sum to {sum(probs):g}); datasets rejects "
                    "them otherwise."
                )
    elif isinstance(strategy, str) and strategy.startswith("interleave") and len(names) > 1:
        report.hint(f"mix_strategy: {strategy} without interleave_probs draws from each dataset with equal probability.")
    if len(facts) > 1:
        _check_image_storage(facts, str(setting(recipe, "dataset_dir")), report)
        _check_modalities(facts, setting(recipe, "stage"), report)
    if recipe.get("streaming"):
        if recipe.get("max_steps") in (None, -1):
            report.error('streaming: true needs max_steps (LLaMA-Factory: "Please specify `max_steps` in streaming mode.").')
        if any(f.entry and "file_name" in f.entry for f in facts) and not recipe.get("dataloader_num_workers"):
            report.error(
                "streaming: true with a local file and dataloader_num_workers 0 yields no data (LLaMA-Factory shards local files into "
                "dataloader_num_workers pieces). Set dataloader_num_workers >= 1."
            )

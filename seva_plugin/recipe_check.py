"""``seva check-recipe RECIPE.yaml [key=value ...]``: validate a LLaMA-Factory training recipe in seconds.

Nothing is loaded but the recipe, ``dataset_info.json``, the first record of each local data file and,
when the model is a local directory (or in the Hugging Face cache), its ``config.json`` and
``preprocessor_config.json``. The rules come from the installed packages wherever they can:

- allowed keys: the ``init`` fields of LLaMA-Factory's ``ModelArguments``, ``DataArguments``,
  ``TrainingArguments``, ``FinetuningArguments`` and ``GeneratingArguments`` (what
  ``HfArgumentParser.parse_dict`` accepts); ``Literal`` and enum fields give the allowed values;
- LLaMA-Factory's own ``__post_init__`` checks of the model, data, finetuning and generating arguments;
- ``pref_loss``: whether LLaMA-Factory's DPO trainer passes the loss type to trl's ``dpo_loss``, read
  from the installed sources (with trl 0.24 it does not: hinge, ipo and kto_pair silently compute sigmoid);
- ``mix_strategy``: LLaMA-Factory's mapping to a ``stopping_strategy``, checked against what the
  installed ``datasets.interleave_datasets`` accepts (``interleave_once`` fails with datasets 4.0.0);
- templates, their multimodal plugin, and LLaMA-Factory's default template for known hub ids.

Problems are errors (training would stop or silently do something else), warnings (risks), or
hints (the recipe asks for hardware or packages this machine lacks; fine on the training machine).
"""

from __future__ import annotations

import argparse
import ast
import enum
import functools
import glob
import json
import os
import re
import sys
import typing
from dataclasses import dataclass, field
from typing import Any

from seva_plugin.errors import did_you_mean

# Tokens a SeVa prompt takes besides its image tokens: system prompt, role markers and the question
# (OCR-VQA questions are short; TextCaps prompts with "Reference OCR token: ..." run to ~100 tokens).
PROMPT_TOKENS = 128
# The longest answer a build generates unless its config says otherwise (official SeVa: 512).
ANSWER_TOKENS = 512
# What a hub preference set is, and what it is called in data_templates/dataset_info.json when exported.
DATA_TEMPLATES = "data_templates"

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

# Hub ids that are not in LLaMA-Factory's model table, recognised by name: (pattern, plugin, model_type).
ID_PATTERNS = [
    (r"qwen2\.5-vl|qwen2_5_vl", "qwen2_vl", "qwen2_5_vl"),
    (r"qwen2-vl|qwen2_vl", "qwen2_vl", "qwen2_vl"),
    (r"qwen3-vl|qwen3_vl", "qwen3_vl", "qwen3_vl"),
    (r"llava-next-video|llava_next_video", "llava_next_video", "llava_next_video"),
    (r"llava-v1\.6|llava-next|llava_next|llava-1\.6", "llava_next", "llava_next"),
    (r"llava-v1\.5|llava-1\.5|llava_v1_5|llava1\.5", "llava", "llava"),
]

# LlavaNextConfig's default image_grid_pinpoints (transformers models/llava_next/configuration_llava_next.py).
DEFAULT_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]


@dataclass
class CheckReport:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, msg: str) -> None:
        if msg not in self.errors:
            self.errors.append(msg)

    def warn(self, msg: str) -> None:
        if msg not in self.warnings:
            self.warnings.append(msg)

    def hint(self, msg: str) -> None:
        if msg not in self.hints:
            self.hints.append(msg)

    def lines(self) -> list[str]:
        return [f"error: {m}" for m in self.errors] + [f"warning: {m}" for m in self.warnings] + [f"hint: {m}" for m in self.hints]


# ---------------------------------------------------------------------------------------------
# Facts read from the installed packages
# ---------------------------------------------------------------------------------------------


def _package_dir(name: str) -> str | None:
    """The directory of an installed package, found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


@functools.lru_cache(maxsize=1)
def _arg_fields() -> dict[str, Any]:
    """name -> dataclasses.Field for every key ``llamafactory-cli train`` accepts, with its owner class."""
    import dataclasses

    try:  # the exact list the train parser uses (hparams/parser.py _TRAIN_ARGS)
        from llamafactory.hparams.parser import _TRAIN_ARGS as classes
    except ImportError:  # pragma: no cover - a future LLaMA-Factory
        from llamafactory.hparams import DataArguments, FinetuningArguments, GeneratingArguments, ModelArguments, TrainingArguments

        classes = [ModelArguments, DataArguments, TrainingArguments, FinetuningArguments, GeneratingArguments]
    out: dict[str, Any] = {}
    for cls in classes:
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # an unresolvable forward reference: fall back to the raw annotations
            hints = {}
        for f in dataclasses.fields(cls):
            if f.init and f.name not in out:
                out[f.name] = (cls, f, hints.get(f.name, f.type))
    return out


def _choices(tp) -> list | None:
    """Allowed values of a Literal or Enum annotation (through Optional), else None."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return list(typing.get_args(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return [m.value for m in tp]
    if origin is not None:
        if str in typing.get_args(tp):  # e.g. `SchedulerType | str`: any string goes
            return None
        for arg in typing.get_args(tp):
            if arg is type(None):
                continue
            found = _choices(arg)
            if found is not None:
                return found
    return None


def _scalar_kind(tp) -> type | None:
    """bool, int, float for simple annotations (through Optional), else None."""
    args = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) is not None else [tp]
    if len(args) == 1 and args[0] in (bool, int, float):
        return args[0]
    return None


@functools.lru_cache(maxsize=1)
def _templates() -> dict[str, str]:
    """template name -> name of its multimodal plugin ('base' when it has no image support)."""
    from llamafactory.data.mm_plugin import PLUGINS
    from llamafactory.data.template import TEMPLATES

    by_class = {cls: name for name, cls in PLUGINS.items()}
    return {name: by_class.get(type(t.mm_plugin), type(t.mm_plugin).__name__) for name, t in TEMPLATES.items()}


@functools.lru_cache(maxsize=1)
def _known_models() -> dict[str, str | None]:
    """lower-case hub id -> LLaMA-Factory's default template for it (extras/constants.py register_model_group)."""
    from llamafactory.extras.constants import DEFAULT_TEMPLATE, SUPPORTED_MODELS

    out = {}
    for name, paths in SUPPORTED_MODELS.items():
        for path in paths.values():
            out.setdefault(str(path).lower(), DEFAULT_TEMPLATE.get(name))
    return out


def _ast_of(path: str) -> ast.Module | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return ast.parse(fh.read())
    except (OSError, SyntaxError):
        return None


def _compared_strings(fn: ast.AST, name: str) -> set[str]:
    """String constants compared with a variable / attribute called ``name`` inside ``fn``."""
    found = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Compare):
            parts = [node.left, *node.comparators]
            named = any((isinstance(p, ast.Name) and p.id == name) or (isinstance(p, ast.Attribute) and p.attr == name) for p in parts)
            if named:
                for p in parts:
                    if isinstance(p, ast.Constant) and isinstance(p.value, str):
                        found.add(p.value)
                    elif isinstance(p, (ast.List, ast.Tuple, ast.Set)):
                        found.update(e.value for e in p.elts if isinstance(e, ast.Constant) and isinstance(e.value, str))
    return found


@functools.lru_cache(maxsize=1)
def _dpo_loss_facts() -> dict:
    """How the installed LLaMA-Factory and trl compute a DPO loss that LLaMA-Factory does not implement itself.

    Returns {"own": set of pref_loss values LLaMA-Factory computes itself, "passes_loss_type": bool,
    "call": "file:line", "trl_default": str | None, "trl_supported": set, "trl": version}.
    """
    facts: dict[str, Any] = {
        "own": {"orpo", "simpo"},
        "passes_loss_type": None,
        "call": "",
        "trl_default": None,
        "trl_supported": set(),
        "trl": _version("trl"),
    }
    lf_dir, trl_dir = _package_dir("llamafactory"), _package_dir("trl")
    if lf_dir:
        path = os.path.join(lf_dir, "train", "dpo", "trainer.py")
        tree = _ast_of(path)
        if tree is not None:
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef) and node.name == "compute_preference_loss":
                    own = _compared_strings(node, "loss_type")
                    if own:
                        facts["own"] = own
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "dpo_loss":
                    facts["passes_loss_type"] = any(k.arg == "loss_type" for k in node.keywords) or len(node.args) >= 5
                    facts["call"] = f"llamafactory/train/dpo/trainer.py:{node.lineno}"
    if trl_dir:
        tree = _ast_of(os.path.join(trl_dir, "trainer", "dpo_trainer.py"))
        if tree is not None:
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef) and node.name == "dpo_loss":
                    args = node.args.args
                    defaults = dict(zip([a.arg for a in args[len(args) - len(node.args.defaults) :]], node.args.defaults, strict=True))
                    default = defaults.get("loss_type")
                    if isinstance(default, ast.Constant):
                        facts["trl_default"] = default.value
                    facts["trl_param"] = "loss_type" in [a.arg for a in args]
                    facts["trl_supported"] = _compared_strings(node, "loss_type")
                    break
    return facts


@functools.lru_cache(maxsize=1)
def _mix_facts() -> dict:
    """LLaMA-Factory's mix_strategy -> stopping_strategy map and the stopping strategies datasets accepts."""
    facts: dict[str, Any] = {"map": {}, "accepted": None, "datasets": _version("datasets")}
    lf_dir, ds_dir = _package_dir("llamafactory"), _package_dir("datasets")
    if lf_dir:
        tree = _ast_of(os.path.join(lf_dir, "data", "data_utils.py"))
        for node in ast.walk(tree) if tree else []:
            if isinstance(node, ast.Dict):
                keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
                if "interleave_under" in keys:
                    facts["map"] = {
                        k.value: v.value for k, v in zip(node.keys, node.values, strict=True) if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)
                    }
                    facts["map_line"] = f"llamafactory/data/data_utils.py:{node.lineno}"
    if ds_dir:
        tree = _ast_of(os.path.join(ds_dir, "combine.py"))
        for node in ast.walk(tree) if tree else []:
            if isinstance(node, ast.FunctionDef) and node.name == "interleave_datasets":
                accepted = set()
                for arg in node.args.args + node.args.kwonlyargs:
                    if arg.arg == "stopping_strategy" and arg.annotation is not None:
                        for sub in ast.walk(arg.annotation):
                            if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                                accepted.add(sub.value)
                accepted |= _compared_strings(node, "stopping_strategy")
                facts["accepted"] = accepted or None
    return facts


def _lf_default(name: str) -> Any:
    entry = _arg_fields().get(name)
    return entry[1].default if entry else None


# ---------------------------------------------------------------------------------------------
# Loading the recipe
# ---------------------------------------------------------------------------------------------


def load_recipe(path: str, overrides: list[str] | None, report: CheckReport) -> dict | None:
    """The recipe as ``llamafactory-cli train`` reads it: OmegaConf YAML merged with CLI overrides."""
    from omegaconf import OmegaConf

    if not os.path.isfile(path):
        report.error(f"recipe not found: {path}")
        return None
    try:
        conf = OmegaConf.load(os.path.abspath(path))
    except Exception as exc:  # omegaconf / yaml errors
        report.error(f"{path} is not valid YAML: {exc}")
        return None
    for item in overrides or []:
        if "=" not in item:
            report.error(f"override '{item}' is not of the form key=value (e.g. dataset_dir=data).")
            return None
    try:
        merged = OmegaConf.to_container(OmegaConf.merge(conf, OmegaConf.from_cli(list(overrides or []))))
    except Exception as exc:
        report.error(f"cannot apply overrides {overrides}: {exc}")
        return None
    if not isinstance(merged, dict):
        report.error(f"{path} must hold a mapping of LLaMA-Factory keys.")
        return None
    return merged


def _split(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value]
    return [item.strip() for item in str(value).split(",")]


# ---------------------------------------------------------------------------------------------
# Individual checks
# ---------------------------------------------------------------------------------------------


def check_keys(recipe: dict, report: CheckReport) -> None:
    fields = _arg_fields()
    extra_allowed = os.getenv("ALLOW_EXTRA_ARGS", "0").lower() in ("true", "y", "1")  # as LLaMA-Factory reads it
    for key, value in recipe.items():
        if key not in fields:
            if extra_allowed:
                report.warn(f"unknown key '{key}' is ignored (ALLOW_EXTRA_ARGS is set).{did_you_mean(key, fields)}")
            else:
                report.error(
                    f"unknown key '{key}': llamafactory-cli train refuses keys its argument classes do not define "
                    f"(unless ALLOW_EXTRA_ARGS=1).{did_you_mean(key, fields)}"
                )
            continue
        cls, f, tp = fields[key]
        help_text = str(f.metadata.get("help", ""))
        if re.search(r"deprecated and will be removed|is deprecated.*\buse\b", help_text, re.I | re.S):
            report.warn(f"'{key}' is deprecated in the installed packages: {help_text}")
        if value is None:
            continue
        choices = _choices(tp)
        if choices is not None:
            allowed = [str(c) for c in choices]
            if str(value) not in allowed:
                report.error(f"{key}: '{value}' is not allowed; {cls.__name__} accepts {', '.join(allowed)}.{did_you_mean(str(value), allowed)}")
            continue
        kind = _scalar_kind(tp)
        if kind is bool and not isinstance(value, bool):
            report.error(f"{key}: expected true or false, got {value!r}.")
        elif kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            report.error(f"{key}: expected an integer, got {value!r}.")
        elif kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
            report.error(f"{key}: expected a number, got {value!r} (write 1.0e-4 or 1e-4, not a quoted string).")


def check_lf_validation(recipe: dict, report: CheckReport) -> None:
    """Run LLaMA-Factory's own __post_init__ checks of the non-training argument classes."""
    from llamafactory.hparams import DataArguments, FinetuningArguments, GeneratingArguments, ModelArguments

    fields = _arg_fields()
    for cls in (ModelArguments, DataArguments, FinetuningArguments, GeneratingArguments):
        kwargs = {k: v for k, v in recipe.items() if k in fields and fields[k][0] is cls}
        try:
            cls(**kwargs)
        except (ValueError, AssertionError, TypeError) as exc:
            report.error(f"LLaMA-Factory rejects the recipe ({cls.__name__}): {exc}")


def check_method(recipe: dict, report: CheckReport) -> None:
    stage = recipe.get("stage", _lf_default("stage"))
    if not recipe.get("do_train", False):
        report.warn("do_train is not true: llamafactory-cli train would set everything up and not train. Add `do_train: true`.")
    if stage != "dpo":
        return
    pref_loss = recipe.get("pref_loss", _lf_default("pref_loss"))
    facts = _dpo_loss_facts()
    if pref_loss in facts["own"] or facts["passes_loss_type"] is None:
        return
    if not facts["passes_loss_type"] and facts.get("trl_param"):
        default = facts["trl_default"]
        if pref_loss != default:
            report.error(
                f"pref_loss: {pref_loss} is accepted by LLaMA-Factory but not really implemented with the installed trl "
                f"{facts['trl']}: LLaMA-Factory calls trl's DPOTrainer.dpo_loss without a loss_type ({facts['call']}) "
                f"and trl {facts['trl']} then computes its default '{default}', so training would silently run {default} DPO. "
                f"Use pref_loss: {default} (what SeVa uses), or one LLaMA-Factory computes itself: {', '.join(sorted(facts['own']))}."
            )
        return
    supported = facts["trl_supported"]
    if supported and pref_loss not in supported:
        report.error(f"pref_loss: {pref_loss} is not implemented by the installed trl {facts['trl']} (its dpo_loss knows {', '.join(sorted(supported))}).")


def check_hardware(recipe: dict, report: CheckReport) -> None:
    import torch

    cuda = torch.cuda.is_available()
    use_cpu = bool(recipe.get("use_cpu", False))
    for key in ("bf16", "pure_bf16", "bf16_full_eval"):
        if recipe.get(key):
            if not cuda and not use_cpu:
                report.hint(
                    f"{key}: true, but this machine has no CUDA GPU: here transformers stops with \"Your setup doesn't support "
                    f'bf16/gpu". Fine on a bf16 GPU (Ampere or newer); to try the recipe here add `bf16=false use_cpu=true`.'
                )
            elif cuda:
                from transformers.utils import is_torch_bf16_gpu_available

                if not is_torch_bf16_gpu_available():
                    report.hint(f"{key}: true, but this GPU has no bf16 support (pre-Ampere); use fp16: true instead.")
            break
    if recipe.get("fp16") and not cuda:
        report.hint("fp16: true needs a CUDA GPU; to try the recipe here add `fp16=false use_cpu=true`.")
    if recipe.get("tf32") and not cuda:
        report.hint("tf32: true needs an Ampere or newer GPU; transformers refuses it here. Drop it on other machines.")
    attn = str(recipe.get("flash_attn", "auto"))
    if attn in ("fa2", "fa3"):
        package = "flash_attn" if attn == "fa2" else "flash_attn_interface"
        import importlib.util

        if not cuda or importlib.util.find_spec(package) is None:
            why = "no CUDA GPU" if not cuda else f"the {package} package is not installed"
            report.hint(f"flash_attn: {attn} cannot run here ({why}); LLaMA-Factory falls back to another attention. Use flash_attn: sdpa (or auto) off CUDA.")
    ds = recipe.get("deepspeed")
    if ds:
        if isinstance(ds, str) and ds.endswith(".json") and not os.path.isfile(ds):
            report.error(f"deepspeed: config file not found: {ds} (resolved against the current directory {os.getcwd()}).")
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            report.hint(
                "deepspeed is set but the deepspeed package is not installed here; LLaMA-Factory requires it (pip install deepspeed) and launches with FORCE_TORCHRUN=1."
            )


def check_output(recipe: dict, report: CheckReport) -> None:
    out = recipe.get("output_dir")
    if not out or not os.path.isdir(out) or recipe.get("overwrite_output_dir") or recipe.get("resume_from_checkpoint"):
        return
    steps = [int(m.group(1)) for p in os.listdir(out) if (m := re.fullmatch(r"checkpoint-(\d+)", p)) and os.path.isdir(os.path.join(out, p))]
    if steps:
        report.warn(f"output_dir {out} holds checkpoint-{max(steps)}: LLaMA-Factory will resume from it. Set overwrite_output_dir: true to start over.")
        return
    from llamafactory.extras.constants import CHECKPOINT_NAMES  # what LLaMA-Factory's output_dir check looks for

    if any(os.path.isfile(os.path.join(out, n)) for n in CHECKPOINT_NAMES):
        report.error(
            f'output_dir {out} already holds a trained model: LLaMA-Factory stops with "Output directory already exists and is not empty". Set overwrite_output_dir: true or choose another output_dir.'
        )


# -- datasets ---------------------------------------------------------------------------------


def _template_dirs(recipe_path: str) -> list[str]:
    here = os.path.dirname(os.path.abspath(recipe_path))
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dirs = [
        os.path.join(os.getcwd(), DATA_TEMPLATES),
        os.path.join(here, DATA_TEMPLATES),
        os.path.join(os.path.dirname(here), DATA_TEMPLATES),
        os.path.join(package_root, DATA_TEMPLATES),
    ]
    out = []
    for d in dirs:
        d = os.path.normpath(d)
        if os.path.isdir(d) and d not in out:
            out.append(d)
    return out


def _show(path: str) -> str:
    """A path as a user types it: relative to the current directory when inside it."""
    path = os.path.abspath(path)
    cwd = os.getcwd()
    if os.path.commonpath([cwd, path]) == cwd:
        return os.path.relpath(path, cwd)
    return path


def _read_yaml(path: str) -> dict:
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, yaml.YAMLError):
        return {}


def find_build_config(name: str, recipe_path: str) -> tuple[str, dict] | None:
    """The build config in data_templates/ whose output.name is ``name`` (file ``<name>.yaml`` first)."""
    for d in _template_dirs(recipe_path):
        direct = os.path.join(d, f"{name}.yaml")
        if os.path.isfile(direct):
            cfg = _read_yaml(direct)
            out = cfg.get("output") if isinstance(cfg.get("output"), dict) else {}
            if out.get("name", name) == name:
                return direct, cfg
    for d in _template_dirs(recipe_path):
        for path in sorted(glob.glob(os.path.join(d, "*.yaml"))):
            cfg = _read_yaml(path)
            if isinstance(cfg.get("output"), dict) and cfg["output"].get("name") == name:
                return path, cfg
    return None


def build_command(name: str, recipe_path: str, dataset_dir: str) -> str | None:
    found = find_build_config(name, recipe_path)
    if not found:
        return None
    path, cfg = found
    cmd = f"seva build {_show(path)}"
    out = cfg.get("output") if isinstance(cfg.get("output"), dict) else {}
    built_dir = out.get("dataset_dir", "data")
    if os.path.abspath(str(built_dir)) != os.path.abspath(dataset_dir):
        cmd += f" output.dataset_dir={dataset_dir}"
    return cmd


def _template_entry(name: str, recipe_path: str) -> str | None:
    for d in _template_dirs(recipe_path):
        path = os.path.join(d, "dataset_info.json")
        try:
            with open(path, encoding="utf-8") as fh:
                if name in json.load(fh):
                    return path
        except (OSError, ValueError):
            continue
    return None


def _first_record(path: str) -> dict | None:
    """The first record of a local JSONL file, or of a JSON list under 50 MB; None if empty or unreadable."""
    try:
        if path.endswith(".jsonl"):
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        row = json.loads(line)
                        return row if isinstance(row, dict) else None
            return None
        if path.endswith(".json") and os.path.getsize(path) < 50_000_000:
            with open(path, encoding="utf-8") as fh:
                rows = json.load(fh)
            return rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return None


@dataclass
class DatasetFacts:
    name: str
    hub: bool = False
    has_images: bool = False
    images_per_record: int = 1
    entry: dict | None = None


def check_datasets(recipe: dict, recipe_path: str, report: CheckReport, key: str = "dataset") -> list[DatasetFacts]:
    from llamafactory.extras.constants import FILEEXT2TYPE

    names = _split(recipe.get(key))
    if not names:
        if key == "dataset" and recipe.get("do_train"):
            report.error("no dataset: set `dataset: <name>` (a name registered in dataset_dir/dataset_info.json).")
        return []
    seen = set()
    for name in names:
        if name in seen:
            report.warn(
                f"{key} lists '{name}' twice: LLaMA-Factory loads each name once (data/loader.py keys datasets by name). To see pairs twice use num_train_epochs."
            )
        seen.add(name)
    stage = recipe.get("stage", _lf_default("stage"))
    dataset_dir = str(recipe.get("dataset_dir", _lf_default("dataset_dir")))
    media_dir = str(recipe.get("media_dir") or dataset_dir)
    if dataset_dir == "ONLINE" or dataset_dir.startswith("REMOTE:"):
        report.warn(f"dataset_dir: {dataset_dir} is read from the hub at train time; the datasets were not checked.")
        return [DatasetFacts(n, hub=True) for n in dict.fromkeys(names)]
    info_path = os.path.join(dataset_dir, "dataset_info.json")
    where = f"dataset_dir '{dataset_dir}'" + (
        "" if os.path.isabs(dataset_dir) else f" (resolved against the current directory {os.getcwd()}, as llamafactory-cli does)"
    )
    if not os.path.isfile(info_path):
        msg = f"no dataset_info.json in {where}."
        cmds = [c for c in (build_command(n, recipe_path, dataset_dir) for n in dict.fromkeys(names)) if c]
        if cmds:
            msg += " Build the data first: " + "; ".join(f"`{c}`" for c in cmds) + " (each build writes its entry)."
        templ = [n for n in names if _template_entry(n, recipe_path)]
        if templ:
            msg += f" Entries for {', '.join(templ)} are in {DATA_TEMPLATES}/dataset_info.json: copy it to {dataset_dir}/ before building."
        report.error(msg)
        return []
    try:
        with open(info_path, encoding="utf-8") as fh:
            info = json.load(fh)
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        report.error(f"{info_path} is not valid JSON ({exc}).")
        return []

    facts = []
    for name in dict.fromkeys(names):
        entry = info.get(name)
        if entry is None:
            msg = f"{key} '{name}' is not registered in {info_path}.{did_you_mean(name, info)}"
            cmd = build_command(name, recipe_path, dataset_dir)
            templ = _template_entry(name, recipe_path)
            if cmd:
                msg += f" It has a build config but is not built yet: run `{cmd}` (it writes the data and its dataset_info.json entry)."
            elif templ:
                msg += f" Its entry is in {_show(templ)}: copy it into {info_path}."
            report.error(msg)
            continue
        if not isinstance(entry, dict):
            report.error(f"{info_path}: entry '{name}' must be a JSON object.")
            continue
        fact = DatasetFacts(name, entry=entry)
        columns = entry.get("columns") or {}
        fact.has_images = bool(columns.get("images"))
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
                f"{key} '{name}' is a preference set (\"ranking\": true) but stage is {stage}: LLaMA-Factory refuses it. Preference pairs train with stage: dpo."
            )
        if ranking and stage in ("dpo", "rm") and formatting == "sharegpt" and not (columns.get("chosen") and columns.get("rejected")):
            report.error(f'{info_path}: \'{name}\' is a sharegpt ranking set but its columns lack "chosen" and "rejected".')
        if hub_keys:
            fact.hub = True
            report.hint(f"{key} '{name}' is downloaded from the hub ({entry[hub_keys[0]]}) when training starts; it was not checked here.")
        elif "script_url" in entry or "cloud_file_name" in entry:
            pass
        elif "file_name" not in entry:
            report.error(f"{info_path}: '{name}' has no file_name (nor hf_hub_url).")
        else:
            local = os.path.join(dataset_dir, entry["file_name"])
            cmd = build_command(name, recipe_path, dataset_dir)
            if not os.path.exists(local):
                msg = f"{key} '{name}': file not found: {local} (LLaMA-Factory: \"File {local} not found.\")."
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
        facts.append(fact)
        _check_provenance(recipe, recipe_path, name, dataset_dir, report)
    return facts


def _check_first_record(name: str, path: str, entry: dict, media_dir: str, fact: DatasetFacts, report: CheckReport) -> None:
    row = _first_record(path)
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
                    f"dataset '{name}': image '{first}' of the first record is neither under media_dir '{media_dir}' nor a path that exists; training would fail to open it."
                )


def generation_config(name: str, recipe_path: str, dataset_dir: str) -> tuple[str, dict] | None:
    """The build config a dataset was generated with (its manifest) or will be (data_templates/)."""
    manifest = os.path.join(dataset_dir, f"{name}.manifest.json")
    if os.path.isfile(manifest):
        cfg = _read_json(manifest).get("config")
        if isinstance(cfg, dict):
            return manifest, cfg
    found = find_build_config(name, recipe_path)
    return (_show(found[0]), found[1]) if found else None


def _check_provenance(recipe: dict, recipe_path: str, name: str, dataset_dir: str, report: CheckReport) -> None:
    """Compare the model/template the pairs were (or will be) generated with against the recipe's."""
    found = generation_config(name, recipe_path, dataset_dir)
    if not found:
        return
    source, cfg = found
    built_template, template = cfg.get("template"), recipe.get("template")
    if built_template and template and built_template != template:
        report.warn(
            f"dataset '{name}' is generated with template '{built_template}' ({source}) but trained with template '{template}': "
            "train with the format the answers were generated in (the official SeVa code mixed two templates; this plugin keeps one)."
        )
    built_model, model = cfg.get("model"), recipe.get("model_name_or_path")
    if built_model and model and os.path.basename(str(built_model).rstrip("/")).lower() != os.path.basename(str(model).rstrip("/")).lower():
        report.warn(
            f"dataset '{name}' is generated by '{built_model}' ({source}) but the recipe trains '{model}': SeVa pairs are the "
            "model's own answers; pairs from another model are off-policy."
        )


def check_generation_pixels(recipe: dict, recipe_path: str, facts: ModelFacts | None, datasets: list[DatasetFacts], report: CheckReport) -> None:
    """Where image_max_pixels decides what the model sees (Qwen2-VL tokens, LLaVA-NeXT tiles), generation and training should agree."""
    if facts is None or facts.plugin not in ("qwen2_vl", "qwen3_vl", "llava_next"):
        return
    dataset_dir = str(recipe.get("dataset_dir", _lf_default("dataset_dir")))
    default_pixels = _lf_default("image_max_pixels")
    pixels = recipe.get("image_max_pixels") or default_pixels
    for d in datasets:
        found = generation_config(d.name, recipe_path, dataset_dir)
        if not found:
            continue
        source, cfg = found
        backend = cfg.get("backend") if isinstance(cfg.get("backend"), dict) else {}
        built_pixels = backend.get("image_max_pixels") or default_pixels
        if built_pixels != pixels:
            report.warn(
                f"dataset '{d.name}' is generated with image_max_pixels {built_pixels} ({source}) but trained with {pixels}: "
                f"for a {facts.plugin} model that changes the image tokens, so training sees other inputs than generation did."
            )


def check_mixing(recipe: dict, facts: list[DatasetFacts], report: CheckReport) -> None:
    names = list(dict.fromkeys(_split(recipe.get("dataset"))))
    eval_names = list(dict.fromkeys(_split(recipe.get("eval_dataset"))))
    strategy = recipe.get("mix_strategy", _lf_default("mix_strategy"))
    probs_raw = recipe.get("interleave_probs")
    mix = _mix_facts()
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
            probs = [float(p) for p in _split(probs_raw)]
        except ValueError:
            report.error(f"interleave_probs: '{probs_raw}' must be comma-separated numbers, one per dataset (e.g. 0.7,0.3).")
            probs = None
        if probs is not None:
            if strategy == "concat":
                report.error(
                    'interleave_probs is set but mix_strategy is concat: LLaMA-Factory refuses it ("`interleave_probs` is only valid for interleaved mixing"). Set mix_strategy: interleave_under or interleave_over.'
                )
            for label, lst in (("dataset", names), ("eval_dataset", eval_names)):
                if lst and len(lst) != len(probs):
                    report.error(
                        f"interleave_probs has {len(probs)} value(s) ({','.join(map(str, probs))}) but {label} lists {len(lst)} "
                        f"({', '.join(lst)}): LLaMA-Factory needs one probability per dataset, in the same order."
                    )
            if any(p < 0 for p in probs) or abs(sum(probs) - 1.0) > 1e-6:
                report.error(
                    f"interleave_probs {','.join(map(str, probs))} must be non-negative and sum to 1 (they sum to {sum(probs):g}); datasets rejects them otherwise."
                )
    elif isinstance(strategy, str) and strategy.startswith("interleave") and len(names) > 1:
        report.hint(f"mix_strategy: {strategy} without interleave_probs draws from each dataset with equal probability.")
    if len(facts) > 1:
        hub = [f.name for f in facts if f.hub and f.has_images]
        local = [
            f.name
            for f in facts
            if not f.hub and f.has_images and f.entry and "file_name" in f.entry and not str(f.entry["file_name"]).endswith((".parquet", ".arrow"))
        ]
        if hub and local:
            report.error(
                f"mixing {', '.join(local)} (image paths in a local file) with {', '.join(hub)} (images embedded in a hub dataset) fails "
                'in LLaMA-Factory: "The features can\'t be aligned because the key _images ..." (hiyouga/LlamaFactory#317; '
                "streaming does not help). Export the hub set to a JSONL file with image files and register that instead "
                '(docs/recipes.md, "Mixing in other sets"; data_templates/dataset_info.json has rlhf_v_local).'
            )
    if recipe.get("streaming"):
        if recipe.get("max_steps") in (None, -1):
            report.error('streaming: true needs max_steps (LLaMA-Factory: "Please specify `max_steps` in streaming mode.").')
        if any(f.entry and "file_name" in f.entry for f in facts) and not recipe.get("dataloader_num_workers"):
            report.error(
                "streaming: true with a local file and dataloader_num_workers 0 yields no data (LLaMA-Factory shards local files into dataloader_num_workers pieces). Set dataloader_num_workers >= 1."
            )


# -- model and template -----------------------------------------------------------------------


@dataclass
class ModelFacts:
    where: str  # local | cache | id | missing
    model_type: str | None = None
    plugin: str | None = None  # the image-processing family: llava, llava_next, qwen2_vl, ...
    config: dict = field(default_factory=dict)
    preprocessor: dict = field(default_factory=dict)
    default_template: str | None = None


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _plugin_for_model_type(model_type: str | None, template_plugin: str | None) -> str | None:
    candidates = [p for p, types in PLUGIN_MODEL_TYPES.items() if model_type in types]
    if template_plugin in candidates:
        return template_plugin
    return candidates[0] if candidates else None


def inspect_model(model: str, template_plugin: str | None, report: CheckReport) -> ModelFacts:
    path = os.path.expanduser(model)
    if os.path.isdir(path):
        config = _read_json(os.path.join(path, "config.json"))
        if not config:
            report.error(f"model_name_or_path {model} is a folder without a readable config.json.")
            return ModelFacts("missing")
        pre = _read_json(os.path.join(path, "preprocessor_config.json"))
        mt = config.get("model_type")
        return ModelFacts("local", mt, _plugin_for_model_type(mt, template_plugin), config, pre)
    looks_like_path = model.startswith((".", "/", "~")) or model.count("/") > 1
    if looks_like_path:
        report.error(f"model_name_or_path {model} is not a folder here and not a hub id (owner/name).")
        return ModelFacts("missing")
    default_template = _known_models().get(model.lower())
    config, pre = {}, {}
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(model, "config.json")
        if isinstance(hit, str):
            config = _read_json(hit)
            hit = try_to_load_from_cache(model, "preprocessor_config.json")
            pre = _read_json(hit) if isinstance(hit, str) else {}
    except Exception:  # an old or absent huggingface_hub: fall back to the id
        config = {}
    if config.get("model_type"):
        mt = config["model_type"]
        return ModelFacts("cache", mt, _plugin_for_model_type(mt, template_plugin), config, pre, default_template)
    plugin = mt = None
    if default_template and _templates().get(default_template, "base") != "base":  # a vision-language model in LLaMA-Factory's table
        plugin = _templates()[default_template]
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
    templates = _templates()
    template = recipe.get("template")
    plugin = None
    if template is None:
        report.error("template is not set: multimodal training needs a template with image support matching the model (llava, llava_next, qwen2_vl, ...).")
    elif template not in templates:
        report.error(f"template '{template}' does not exist in the installed LLaMA-Factory.{did_you_mean(template, templates)}")
        template = None
    else:
        plugin = templates[template]
    model = recipe.get("model_name_or_path")
    if not model:
        return plugin, None
    facts = inspect_model(str(model), plugin, report)
    if template is None or facts.where == "missing":
        return plugin, facts
    family_templates = sorted(t for t, p in templates.items() if facts.plugin and p == facts.plugin)
    suggestion = (
        f" Use template {facts.default_template}."
        if facts.default_template
        else (f" Templates for it: {', '.join(family_templates)}." if family_templates else "")
    )
    if facts.where in ("local", "cache"):
        mt = facts.model_type
        if plugin == "base" and mt in KNOWN_MODEL_TYPES:
            report.error(
                f"template '{template}' has no image support, but {model} is a {mt} vision-language model: LLaMA-Factory stops with \"This model does not support image input\".{suggestion}"
            )
        elif plugin in PLUGIN_MODEL_TYPES and mt and mt not in PLUGIN_MODEL_TYPES[plugin]:
            report.error(
                f"template '{template}' (image plugin {plugin}) does not fit {model} (model_type {mt}): it expands <image> for "
                f"{', '.join(sorted(PLUGIN_MODEL_TYPES[plugin]))} models, so image features and image tokens would not match.{suggestion}"
            )
    elif facts.plugin:
        if plugin == "base":
            report.error(f"template '{template}' has no image support, but {model} is a {facts.plugin}-family vision-language model.{suggestion}")
        elif plugin != facts.plugin:
            report.error(
                f"template '{template}' (image plugin {plugin}) does not fit {model}, a {facts.plugin}-family model: image features and image tokens would not match.{suggestion}"
            )
    if facts.default_template and facts.default_template != template and plugin == templates.get(facts.default_template):
        report.warn(f"template '{template}' handles {model}'s images but LLaMA-Factory's template for it is '{facts.default_template}' (another chat format).")
    return plugin, facts


def image_tokens(facts: ModelFacts, template_plugin: str | None, image_max_pixels: int) -> tuple[int, str] | None:
    """The most image tokens one image can expand to, and how that was found."""
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
        best, best_pp = 0, None
        for h, w in pinpoints:
            rows, cols = (crop_h // patch) * (h // crop_h), (crop_w // patch) * (w // crop_w)
            n = rows * cols + rows + base
            if n > best:
                best, best_pp = n, (h, w)
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
    return None


def check_cutoff(recipe: dict, recipe_path: str, plugin: str | None, facts: ModelFacts | None, datasets: list[DatasetFacts], report: CheckReport) -> None:
    if facts is None or facts.where == "missing":
        return
    pixels = recipe.get("image_max_pixels") or _lf_default("image_max_pixels")
    found = image_tokens(facts, plugin, pixels)
    if not found:
        return
    per_image, how = found
    n_images = max([d.images_per_record for d in datasets if d.has_images] or [1])
    dataset_dir = str(recipe.get("dataset_dir", _lf_default("dataset_dir")))
    answers = []
    for d in datasets:
        found = generation_config(d.name, recipe_path, dataset_dir)
        backend = found[1].get("backend") if found and isinstance(found[1].get("backend"), dict) else {}
        if isinstance(backend.get("max_new_tokens"), int):
            answers.append(backend["max_new_tokens"])
    answer = max(answers) if answers else ANSWER_TOKENS
    cutoff = int(recipe.get("cutoff_len") or _lf_default("cutoff_len"))
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


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def _run(report: CheckReport, label: str, fn, *args):
    try:
        return fn(*args)
    except Exception as exc:  # a check that cannot run must not hide the others
        report.warn(f"the {label} check could not run: {type(exc).__name__}: {exc}")
        return None


def check_recipe(path: str, overrides: list[str] | None = None) -> CheckReport:
    """Validate a LLaMA-Factory training recipe without loading weights."""
    report = CheckReport()
    recipe = load_recipe(path, overrides, report)
    if recipe is None:
        return report
    _run(report, "key", check_keys, recipe, report)
    _run(report, "method", check_method, recipe, report)
    datasets = _run(report, "dataset", check_datasets, recipe, path, report) or []
    if recipe.get("eval_dataset"):
        _run(report, "eval dataset", check_datasets, recipe, path, report, "eval_dataset")
    _run(report, "mixing", check_mixing, recipe, datasets, report)
    template_check = _run(report, "template", check_template, recipe, report)
    plugin, facts = template_check if template_check else (None, None)
    _run(report, "cutoff_len", check_cutoff, recipe, path, plugin, facts, datasets, report)
    _run(report, "image_max_pixels", check_generation_pixels, recipe, path, facts, datasets, report)
    _run(report, "hardware", check_hardware, recipe, report)
    _run(report, "output", check_output, recipe, report)
    if not report.errors:  # LLaMA-Factory's own argument checks catch what the rules above do not know
        _run(report, "LLaMA-Factory argument", check_lf_validation, recipe, report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="seva check-recipe",
        description="Validate a LLaMA-Factory training recipe (keys, datasets, loss, mixing, template, cutoff_len, hardware) without loading weights.",
    )
    parser.add_argument("recipe", metavar="RECIPE", help="a llamafactory-cli train YAML, e.g. recipes/seva_llava.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="overrides, as llamafactory-cli takes them (dataset_dir=/data)")
    args = parser.parse_args(argv)
    import logging

    logging.disable(logging.WARNING)  # LLaMA-Factory's argument classes log while they validate
    try:
        report = check_recipe(args.recipe, args.overrides)
    finally:
        logging.disable(logging.NOTSET)
    status = "FAILED" if report.errors else "ok"
    summary = f"{args.recipe}: {status} ({len(report.errors)} errors, {len(report.warnings)} warnings, {len(report.hints)} hints)"
    try:
        for line in [*report.lines(), summary]:
            print(line)
        sys.stdout.flush()
    except BrokenPipeError:  # `seva check-recipe x.yaml | head`
        sys.stdout = open(os.devnull, "w")  # keep the interpreter from failing again at exit
    return 1 if report.errors else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

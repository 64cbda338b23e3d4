"""Facts read from the installed packages: argument fields and defaults, templates, known models, DPO loss and mixing.

Nothing here imports LLaMA-Factory, trl or datasets at module level; the DPO loss and mixing facts are read
from their sources with ``ast`` without importing them at all.
"""

from __future__ import annotations

import ast
import enum
import functools
import importlib.util
import os
import typing
from typing import Any


def _package_dir(name: str) -> str | None:
    """The directory of an installed package, found without importing it."""
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


# -- LLaMA-Factory's argument classes -----------------------------------------------------------


@functools.lru_cache(maxsize=1)
def arg_fields() -> dict[str, Any]:
    """name -> (owner class, dataclasses.Field, resolved type) for every key ``llamafactory-cli train`` accepts."""
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


def lf_default(name: str) -> Any:
    """LLaMA-Factory's default for a key (None for unknown keys)."""
    entry = arg_fields().get(name)
    return entry[1].default if entry else None


def setting(recipe: dict, key: str) -> Any:
    """The recipe's value for ``key``, or LLaMA-Factory's default when the recipe does not set it."""
    return recipe.get(key, lf_default(key))


def allowed_values(tp) -> list | None:
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
            found = allowed_values(arg)
            if found is not None:
                return found
    return None


def scalar_kind(tp) -> type | None:
    """bool, int, float for simple annotations (through Optional), else None."""
    args = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) is not None else [tp]
    if len(args) == 1 and args[0] in (bool, int, float):
        return args[0]
    return None


# -- templates and models -----------------------------------------------------------------------


# templates() (template name -> its multimodal plugin) is in seva_plugin.families, shared with `seva build`.


@functools.lru_cache(maxsize=1)
def known_models() -> dict[str, str | None]:
    """lower-case hub id -> LLaMA-Factory's default template for it (extras/constants.py register_model_group)."""
    from llamafactory.extras.constants import DEFAULT_TEMPLATE, SUPPORTED_MODELS

    out: dict[str, str | None] = {}
    for name, paths in SUPPORTED_MODELS.items():
        for path in paths.values():
            out.setdefault(str(path).lower(), DEFAULT_TEMPLATE.get(name))
    return out


# -- facts read from the sources ----------------------------------------------------------------


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
def dpo_loss_facts() -> dict:
    """How the installed LLaMA-Factory and trl compute a DPO loss that LLaMA-Factory does not implement itself.

    Returns {"own": set of pref_loss values LLaMA-Factory computes itself, "passes_loss_type": bool,
    "call": "file:line", "trl_default": str | None, "trl_param": bool, "trl_supported": set, "trl": version}.
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
        tree = _ast_of(os.path.join(lf_dir, "train", "dpo", "trainer.py"))
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
def mix_facts() -> dict:
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

"""EVAL.yaml: the build config's conventions (``model``, ``template``, ``adapter``, ``backend``, ``ray``,
``seed``; ``key=value`` overrides) plus ``probes``, ``scoring``, ``output`` and ``compare``, parsed strictly."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass, field, fields
from typing import Any

from seva_plugin.errors import ConfigError, show, unknown
from seva_plugin.pipeline.config import MAX_CONFIG_BYTES, apply_overrides, load_yaml
from seva_plugin.pipeline.ray_settings import ray_settings

SETTINGS = ("random", "popular", "adversarial")  # POPE's three ways to draw the absent objects
QUESTION = "Is there a {object} in the image?"  # POPE's template (its main.py --template)
SCORINGS = ("generate", "logprob")
RUNS = ("base", "adapter")  # what `compare` may name besides the output folders of earlier runs

# format -> key -> (default, type hint); REQUIRED marks a key without a default
REQUIRED = object()
_SAMPLED: dict[str, tuple[Any, str]] = {
    "settings": (list(SETTINGS), "list"),
    "num_images": (500, "int | None"),  # POPE's --img_num; null: every image with enough objects
    "objects_per_image": (3, "int"),  # POPE's --sample_num: present objects asked per image, and as many absent ones
    "question": (QUESTION, "str"),
    "suffix": ("", "str"),
}
PROBE_KEYS: dict[str, dict[str, tuple[Any, str]]] = {
    "pope": {"file": (REQUIRED, "any"), "image_dir": (None, "str | None"), "suffix": ("", "str")},
    "coco": {"annotations": (REQUIRED, "str"), "image_dir": (REQUIRED, "str"), **_SAMPLED},
    "jsonl": {"file": (REQUIRED, "str"), "image_dir": (None, "str | None"), **_SAMPLED},
}
OUTPUT_KEYS: dict[str, tuple[Any, str]] = {"dir": (REQUIRED, "str"), "overwrite": (False, "bool")}


@dataclass
class EvalConfig:
    model: str
    template: str
    probes: dict[str, Any]
    output: dict[str, Any]
    adapter: str | None = None
    backend: Any = field(default_factory=lambda: {"name": "hf"})
    scoring: str = "generate"
    max_new_tokens: int = 32  # each answer stops at its first "." (all POPE's parser reads) or after this many tokens
    seed: int = 0  # POPE's sampling and the bootstrap
    bootstrap: int = 1000  # resamples of the 95% intervals
    compare: list[str] | None = None
    ray: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}

    def fingerprint(self) -> str:
        """What determines the answers (the journal's key): not where they are written, on how many
        workers, nor how the report is drawn from them."""
        kept = {k: v for k, v in self.to_dict().items() if k not in ("output", "ray", "compare", "bootstrap")}
        return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def read_eval_yaml(path: str) -> dict[str, Any]:
    """The mapping in an EVAL.yaml file (checked by :func:`load_eval_config`)."""
    if not os.path.isfile(path):
        raise ConfigError(f"eval config not found: {path}")
    if os.path.getsize(path) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES >> 20} MiB: not an eval config.")
    with open(path, encoding="utf-8", errors="replace") as fh:
        data = load_yaml(fh.read(), path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of eval config keys.")
    return data


def load_eval_config(source: str | dict[str, Any], overrides: list[str] | None = None) -> EvalConfig:
    data = copy.deepcopy(source) if isinstance(source, dict) else read_eval_yaml(source)
    data = apply_overrides(data, overrides or [])
    allowed = {f.name for f in fields(EvalConfig)}
    for key in data:
        if key not in allowed:
            raise unknown("eval config key", key, allowed)
    for key in ("model", "template", "probes", "output"):
        if data.get(key) in (None, "", {}):
            raise ConfigError(f"eval config key '{key}' is required.")
    _check_simple(data)
    data["probes"] = probe_settings(data["probes"])
    data["output"] = _section("output", data["output"], OUTPUT_KEYS)
    data["ray"] = ray_settings(data.get("ray"))
    if data.get("compare") is not None:
        data["compare"] = compare_items(data["compare"], data.get("adapter"))
    return EvalConfig(**data)


def _check_simple(data: dict[str, Any]) -> None:
    from seva_plugin.registry import check_value

    hints = {"model": "str", "template": "str", "adapter": "str | None", "scoring": "str", "max_new_tokens": "int", "seed": "int", "bootstrap": "int"}
    for key, hint in hints.items():
        if key in data:
            check_value(key, data[key], hint)
    if data.get("scoring", "generate") not in SCORINGS:
        raise ConfigError(
            f"scoring must be generate (POPE's way: the model answers, its text is parsed) or logprob (P(Yes) against P(No)), got {show(data['scoring'])}."
        )
    for key, least in (("max_new_tokens", 1), ("seed", 0), ("bootstrap", 0)):
        if data.get(key, least) < least:
            raise ConfigError(f"{key} must be at least {least}, got {data[key]}.")
    backend = data.get("backend")
    if isinstance(backend, dict) and "adapter" in backend:
        raise ConfigError("set the adapter with the top-level key `adapter`, not backend.adapter (compare: [base, adapter] runs with and without it).")


def _section(where: str, raw: Any, keys: dict[str, tuple[Any, str]]) -> dict[str, Any]:
    from seva_plugin.registry import check_value

    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping, got {show(raw)}.")
    for key in raw:
        if key not in keys:
            raise unknown("key", key, keys, where)
    out: dict[str, Any] = {}
    for key, (default, hint) in keys.items():
        if key not in raw and default is REQUIRED:
            raise ConfigError(f"{where}.{key} is required.")
        value = raw.get(key, copy.deepcopy(default))
        check_value(f"{where}.{key}", value, hint)
        out[key] = value
    return out


def probe_settings(raw: Any) -> dict[str, Any]:
    """``probes`` with its format's keys checked and defaults filled in."""
    if not isinstance(raw, dict) or "format" not in raw:
        raise ConfigError(f"probes must be a mapping with a format (pope, coco or jsonl), got {show(raw)}.")
    params = dict(raw)
    fmt = params.pop("format")
    if fmt not in PROBE_KEYS:
        raise unknown("probes.format", fmt, PROBE_KEYS)
    out = {"format": fmt, **_section(f"probes ({fmt})", params, PROBE_KEYS[fmt])}
    if "settings" in out:
        settings = out["settings"]
        if not isinstance(settings, list) or not settings or any(s not in SETTINGS for s in settings) or len(set(settings)) != len(settings):
            raise ConfigError(f"probes.settings must be a list of distinct settings among {', '.join(SETTINGS)}, got {show(settings)}.")
        if out["num_images"] is not None and out["num_images"] < 1:
            raise ConfigError(f"probes.num_images must be at least 1 (or null: every image), got {out['num_images']}.")
        if out["objects_per_image"] < 1:
            raise ConfigError(f"probes.objects_per_image must be at least 1, got {out['objects_per_image']}.")
        if "{object}" not in out["question"]:
            raise ConfigError(f"probes.question must hold {{object}} where the object's name goes, got {show(out['question'])}.")
    if fmt == "pope":
        out["file"] = pope_files(out["file"])
    return out


def pope_files(value: Any) -> dict[str, str]:
    """``probes.file`` of the pope format as ``{setting: path}``: a path, a list of paths, or a mapping.
    A file's setting is what its name says after ``_pope_`` (``coco_pope_adversarial.json``:
    adversarial), else its name; a row's ``category`` (LLaVA's combined file) overrides it."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        named: dict[str, str] = {}
        for path in value:
            stem = os.path.splitext(os.path.basename(path))[0]
            setting = stem.rsplit("_pope_", 1)[-1]
            if setting in named:
                raise ConfigError(f"probes.file: {path} and {named[setting]} are both setting '{setting}'; name them: file: {{setting: path, ...}}.")
            named[setting] = path
        return named
    if isinstance(value, dict) and value and all(isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()):
        return dict(value)
    raise ConfigError(f"probes.file must be a POPE question file, a list of them, or a mapping of setting to file, got {show(value)}.")


def compare_items(value: Any, adapter: str | None) -> list[str]:
    """``compare``: two of ``base``, ``adapter`` (this config's model without and with its adapter) or the
    output folders of earlier ``seva eval`` runs."""
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, str) and v for v in value) or value[0] == value[1]:
        raise ConfigError(f"compare must name two different runs: [base, adapter], or two output folders of earlier seva eval runs; got {show(value)}.")
    if "adapter" in value and not adapter:
        raise ConfigError("compare names 'adapter', but the config sets no adapter (the key `adapter`: a LoRA adapter folder).")
    for item in value:
        if item not in RUNS and not os.path.isfile(os.path.join(item, "predictions.jsonl")):
            raise ConfigError(f"compare: {show(item)} is neither base nor adapter, nor a folder holding an earlier run's predictions.jsonl.")
    return list(value)

"""Build configs: one YAML file plus ``key=value`` overrides, parsed strictly."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass, field, fields
from typing import Any

import yaml

from seva_plugin.build.ray_settings import ray_settings
from seva_plugin.errors import ConfigError, unknown


@dataclass
class BuildConfig:
    model: str
    template: str
    source: dict[str, Any]
    output: dict[str, Any]
    strategy: Any = "seva"
    augment: Any = field(default_factory=lambda: {"name": "diffusion_noise", "step": 500})
    backend: Any = field(default_factory=lambda: {"name": "hf"})
    filters: list[Any] = field(default_factory=lambda: ["empty", "identical"])
    seed: int = 0
    limit: int | None = None  # stop after this many source records (smoke runs)
    ray: dict[str, Any] | None = None  # workers on a Ray cluster (build/ray_settings.py); never changes the data

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# Keys every build's output has; the rest of ``output`` are the chosen writer's own keys,
# checked strictly against its parameters when the build is set up.
OUTPUT_KEYS = {"dataset_dir": "data", "name": None, "overwrite": False, "writer": "llamafactory"}


def fingerprint(config: dict, ignore_output: tuple[str, ...] = ("overwrite",)) -> str:
    """What determines the data of a build: its config less ``limit`` (a smoke run is a prefix of
    the full run), ``ray`` (the same data on any number of workers) and the ``output`` keys in ``ignore_output``."""
    cfg = {k: v for k, v in config.items() if k not in ("limit", "ray")}
    cfg["output"] = {k: v for k, v in cfg["output"].items() if k not in ignore_output}
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``a.b=c`` sets ``data["a"]["b"]``; values are parsed as YAML (``8`` is an int)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value (e.g. augment.step=800).")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw else ""
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if isinstance(child, str) and part in ("strategy", "augment", "backend"):
                child = {"name": child}  # `augment=moco` then `augment.p=1` works
            node[part] = child if isinstance(child, dict) else {}
            node = node[part]
        node[parts[-1]] = value
    return data


def load_config(source: str | dict, overrides: list[str] | None = None) -> BuildConfig:
    if isinstance(source, dict):
        data = copy.deepcopy(source)  # overrides must not reach into the caller's nested dicts
    else:
        if not os.path.isfile(source):
            raise ConfigError(f"build config not found: {source}")
        with open(source, encoding="utf-8") as fh:
            try:
                data = yaml.safe_load(fh) or {}
            except yaml.YAMLError as exc:
                raise ConfigError(f"{source} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{source} must hold a mapping of config keys.")
    data = apply_overrides(data, overrides or [])
    allowed = {f.name for f in fields(BuildConfig)}
    for key in data:
        if key not in allowed:
            raise unknown("config key", key, allowed)
    for key in ("model", "template", "source", "output"):
        if data.get(key) in (None, "", {}):
            raise ConfigError(f"config key '{key}' is required.")
    for key in ("source", "output"):
        if not isinstance(data[key], dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {data[key]!r}.")
    data["output"] = {**OUTPUT_KEYS, **data["output"]}
    if not data["output"]["name"]:
        raise ConfigError("output.name is required: it names the dataset in dataset_info.json.")
    if not isinstance(data.get("seed", 0), int):
        raise ConfigError(f"seed must be an integer, got {data['seed']!r}.")
    data["ray"] = ray_settings(data.get("ray"))
    return BuildConfig(**data)


def split_spec(spec: Any, kind: str, default: str | None = None) -> tuple[str, dict[str, Any]]:
    """``"seva"`` or ``{"name": "seva", ...params}`` -> (name, params); ``default`` names a mapping without one."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict) and isinstance(spec.get("name", default), str):
        params = dict(spec)
        return params.pop("name", default), params
    raise ConfigError(f"{kind} must be a name or a mapping with a 'name' key, got {spec!r}.")


def source_spec(spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Sources are chosen by ``name``, by ``format`` (llava, jsonl) or by ``dataset`` (a LLaMA-Factory dataset)."""
    params = dict(spec)
    if "name" in params:
        return params.pop("name"), params
    if "format" in params:
        return params.pop("format"), params
    if "dataset" in params:
        return "llamafactory", params
    if str(params.get("file", "")).endswith(".jsonl"):
        return "jsonl", params
    if str(params.get("file", "")).endswith(".json"):
        return "llava", params
    raise ConfigError("source needs 'dataset' (a LLaMA-Factory dataset), or 'file' with 'format: llava|jsonl', or 'name'.")

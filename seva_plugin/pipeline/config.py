"""Build configs: one YAML file plus ``key=value`` overrides, parsed strictly."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass, field, fields
from typing import Any

import yaml

from seva_plugin.errors import ConfigError, did_you_mean, show, unknown
from seva_plugin.pipeline.ray_settings import ray_settings

# YAML limits (docs/config.md): a config is small; aliases may not expand it past MAX_YAML_NODES
# (a 650-byte "billion laughs" file expands to 9**9 strings, over 6 GB).
MAX_CONFIG_BYTES = 1 << 20  # a build config file
MAX_OVERRIDE_BYTES = 64 << 10  # one key=value override
MAX_YAML_NODES = 100_000  # values in one document with every alias expanded


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
OUTPUT_TYPES = {"dataset_dir": "str", "name": "str", "overwrite": "bool", "writer": "str"}


def fingerprint(config: dict) -> str:
    """What determines the pairs of a build (its journal): the config less ``limit`` (a smoke run
    is a prefix of the full run), ``ray`` (the same pairs on any number of workers) and every
    ``output`` key but the name (where and in which format the pairs are written does not change
    them: the same journal can be written as JSONL, then as Parquet)."""
    return hashlib.sha256(json.dumps(fingerprinted(config), sort_keys=True, default=str).encode()).hexdigest()


def fingerprinted(config: dict) -> dict:
    """The part of ``config`` its fingerprint is made of (the journal keeps it, to name what changed)."""
    cfg = {k: v for k, v in config.items() if k not in ("limit", "ray")}
    cfg["output"] = {"name": cfg["output"]["name"]}
    return cfg


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``a.b=c`` sets ``data["a"]["b"]``; values are parsed as YAML (``8`` is an int), with
    ``{a:b,c:d}`` read as ``{a: b, c: d}`` (see ``load_yaml``). ``~a.b`` removes the key
    (as Hydra writes it): the way to drop a key a template sets, which ``a.b=null`` cannot
    (null is a value, and a component that has no such key refuses it)."""
    for item in overrides:
        if item.startswith("~"):
            _remove(data, item)
            continue
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value (e.g. augment.step=800), or ~key to remove a key.")
        key, raw = item.split("=", 1)
        value = load_yaml(raw, f"override '{show(item, 60)[1:-1]}'", MAX_OVERRIDE_BYTES, flow_colons=True) if raw else ""
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


def _remove(data: dict, item: str) -> None:
    """``~a.b``: delete ``data["a"]["b"]``; a key that is not there is an error (a typo would do nothing)."""
    if "=" in item:
        raise ConfigError(f"override '{show(item, 60)[1:-1]}': ~key removes a key and takes no value; write ~{item[1:].split('=', 1)[0]}.")
    parts = item[1:].strip().split(".")
    node: Any = data
    for depth, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(parts[:depth]) or "the config"
            keys = sorted(map(str, node)) if isinstance(node, dict) else []
            there = ", ".join(keys) or "(none)"
            raise ConfigError(f"override '{show(item, 60)[1:-1]}': {where} has no key '{part}' to remove.{did_you_mean(part, keys)} Keys there: {there}.")
        if depth < len(parts) - 1:
            node = node[part]
    del node[parts[-1]]


def load_config(source: str | dict, overrides: list[str] | None = None) -> BuildConfig:
    if isinstance(source, dict):
        data = copy.deepcopy(source)  # overrides must not reach into the caller's nested dicts
    else:
        if not os.path.isfile(source):
            raise ConfigError(f"build config not found: {source}")
        if os.path.getsize(source) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{source} is larger than {MAX_CONFIG_BYTES >> 20} MiB: not a build config.")
        with open(source, encoding="utf-8", errors="replace") as fh:
            data = load_yaml(fh.read(), source) or {}
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
            raise ConfigError(f"config key '{key}' must be a mapping, got {show(data[key])}.")
    data["output"] = {**OUTPUT_KEYS, **data["output"]}
    if not data["output"]["name"]:
        raise ConfigError("output.name is required: it names the dataset in dataset_info.json.")
    check_config_values(data)
    data["ray"] = ray_settings(data.get("ray"))
    return BuildConfig(**data)


def load_yaml(text: str, what: str, max_bytes: int = MAX_CONFIG_BYTES, flow_colons: bool = False) -> Any:
    """``yaml.safe_load`` with limits: ``text`` at most ``max_bytes``, and at most ``MAX_YAML_NODES``
    values once every alias is expanded (checked on the composed node graph, before anything is
    built from it). Any problem is a ConfigError naming ``what``.

    ``flow_colons`` (command-line overrides): in a ``{...}`` mapping, a plain key holding a colon
    and no value, as ``{file:x.jsonl,format:jsonl}`` gives (YAML wants a space after the colon), is
    read as ``key: value``. Nobody means a key ``file:x.jsonl`` with no value there; a quoted key
    (``{"a:b": null}``) keeps its meaning."""
    if len(text) > max_bytes:
        raise ConfigError(f"{what} is larger than {max_bytes:,} bytes.")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, what)
        if flow_colons:
            _split_colon_keys(loader, node)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} is not valid YAML: {show(str(exc), 300)[1:-1]}") from None
    except RecursionError:
        raise ConfigError(f"{what} is nested too deeply to be a config.") from None
    finally:
        loader.dispose()


def _split_colon_keys(loader: yaml.SafeLoader, node: yaml.Node, seen: set[int] | None = None) -> None:
    """``{a:b}`` -> ``{a: b}`` in the composed nodes of flow mappings (see ``load_yaml``)."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for i, (key, value) in enumerate(node.value):
            empty = isinstance(value, yaml.ScalarNode) and value.value == "" and value.tag == "tag:yaml.org,2002:null"
            if node.flow_style and empty and isinstance(key, yaml.ScalarNode) and key.style is None and ":" in key.value:
                name, text = key.value.split(":", 1)
                key = yaml.ScalarNode("tag:yaml.org,2002:str", name, key.start_mark, key.end_mark)
                value = yaml.ScalarNode(loader.resolve(yaml.ScalarNode, text, (True, False)), text, value.start_mark, value.end_mark)
                node.value[i] = (key, value)
            _split_colon_keys(loader, value, seen)
    elif isinstance(node, yaml.SequenceNode):
        for child in node.value:
            _split_colon_keys(loader, child, seen)


def _check_expansion(root: yaml.Node, what: str) -> None:
    """Count the values of ``root`` with aliases expanded (each shared node once, times its uses)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise ConfigError(f"{what}: an alias refers to the value that contains it (a recursive YAML alias).")
        open_nodes.add(key)
        if isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        else:
            total = 1
        open_nodes.discard(key)
        if total > MAX_YAML_NODES:
            raise ConfigError(f"{what}: its YAML aliases expand to more than {MAX_YAML_NODES:,} values (a YAML alias bomb?); write the values out instead.")
        sizes[key] = total
        return total

    size(root)


def check_config_values(data: dict) -> None:
    """The build config's own values, by the type rule every component's keys follow
    (``registry.check_value``), plus their ranges; ``output.name`` must be a safe file name."""
    from seva_plugin.pipeline.dataset_files import check_name
    from seva_plugin.registry import check_value

    hints = {f.name: str(f.type) for f in fields(BuildConfig)}  # annotations as written (postponed)
    for key in ("model", "template", "seed", "limit"):
        if key in data:
            check_value(key, data[key], hints[key])
    for key, hint in OUTPUT_TYPES.items():
        check_value(f"output.{key}", data["output"][key], hint)
    if data.get("limit") is not None and data["limit"] < 1:
        raise ConfigError(f"limit must be at least 1, got {data['limit']}: it is the number of source records to build (leave it out for all).")
    if data.get("seed", 0) < 0:
        raise ConfigError(f"seed must be at least 0, got {data['seed']}.")
    check_name(data["output"]["name"], "output.name")


def split_spec(spec: Any, kind: str, default: str | None = None) -> tuple[str, dict[str, Any]]:
    """``"seva"`` or ``{"name": "seva", ...params}`` -> (name, params); ``default`` names a mapping without one."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict) and isinstance(spec.get("name", default), str):
        params = dict(spec)
        return params.pop("name", default), params
    raise ConfigError(f"{kind} must be a name or a mapping with a 'name' key, got {show(spec)}.")


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

"""The build configs behind a dataset: ``data_templates/*.yaml`` (not built yet) or its manifest (built)."""

from __future__ import annotations

import glob
import json
import os

from seva_plugin import resources
from seva_plugin.commands.check_recipe.files import read_json, read_yaml, section, show
from seva_plugin.pipeline.dataset_files import DatasetFiles

# The folder of build configs and of the dataset_info.json entries to copy into a dataset_dir.
DATA_TEMPLATES = "data_templates"


def _template_dirs(recipe_path: str) -> list[str]:
    """data_templates/ folders near the current directory and the recipe, then the shipped ones."""
    here = os.path.dirname(os.path.abspath(recipe_path))
    dirs = [
        os.path.join(os.getcwd(), DATA_TEMPLATES),
        os.path.join(here, DATA_TEMPLATES),
        os.path.join(os.path.dirname(here), DATA_TEMPLATES),
        str(resources.folder("data_templates")),
    ]
    out = []
    for d in dirs:
        d = os.path.normpath(d)
        if os.path.isdir(d) and d not in out:
            out.append(d)
    return out


def find_build_config(name: str, recipe_path: str) -> tuple[str, dict] | None:
    """The build config in data_templates/ whose output.name is ``name`` (file ``<name>.yaml`` first)."""
    for d in _template_dirs(recipe_path):
        direct = os.path.join(d, f"{name}.yaml")
        if os.path.isfile(direct):
            cfg = read_yaml(direct)
            if section(cfg, "output").get("name", name) == name:
                return direct, cfg
    for d in _template_dirs(recipe_path):
        for path in sorted(glob.glob(os.path.join(d, "*.yaml"))):
            cfg = read_yaml(path)
            if section(cfg, "output").get("name") == name:
                return path, cfg
    return None


def build_command(name: str, recipe_path: str, dataset_dir: str) -> str | None:
    """The ``seva build`` command that writes dataset ``name`` into ``dataset_dir``."""
    found = find_build_config(name, recipe_path)
    if not found:
        return None
    path, cfg = found
    cmd = f"seva build {show(path)}"
    built_dir = section(cfg, "output").get("dataset_dir", "data")
    if os.path.abspath(str(built_dir)) != os.path.abspath(dataset_dir):
        cmd += f" output.dataset_dir={dataset_dir}"
    return cmd


def template_entry(name: str, recipe_path: str) -> str | None:
    """The data_templates/dataset_info.json that registers ``name``."""
    for d in _template_dirs(recipe_path):
        path = os.path.join(d, "dataset_info.json")
        try:
            with open(path, encoding="utf-8") as fh:
                if name in json.load(fh):
                    return path
        except (OSError, ValueError):
            continue
    return None


def generation_config(name: str, recipe_path: str, dataset_dir: str) -> tuple[str, dict] | None:
    """The build config a dataset was generated with (its manifest) or will be (data_templates/)."""
    manifest = DatasetFiles(dataset_dir, name).manifest
    if os.path.isfile(manifest):
        cfg = read_json(manifest).get("config")
        if isinstance(cfg, dict):
            return manifest, cfg
    found = find_build_config(name, recipe_path)
    return (show(found[0]), found[1]) if found else None

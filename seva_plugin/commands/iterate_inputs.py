"""What ``seva iterate`` is given: overrides sorted by where they go, and the training recipe."""

from __future__ import annotations

import os

import yaml

from seva_plugin.errors import ConfigError
from seva_plugin.pipeline.config import apply_overrides


def split_overrides(overrides: list[str] | None) -> tuple[list[str], list[str], list[str]]:
    """``(build, train, export)`` overrides, by their ``train.`` / ``export.`` prefix."""
    build, train, export = [], [], []
    for item in overrides or []:
        if item.startswith("train."):
            train.append(item.removeprefix("train."))
        elif item.startswith("export."):
            export.append(item.removeprefix("export."))
        else:
            build.append(item)
    return build, train, export


def read_recipe(recipe: str, train_overrides: list[str]) -> dict:
    if not os.path.isfile(recipe):
        raise ConfigError(f"recipe not found: {recipe}")
    with open(recipe, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{recipe} must hold a mapping of LLaMA-Factory keys.")
    return apply_overrides(data, train_overrides)

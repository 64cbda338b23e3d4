"""The check report, and the recipe as ``llamafactory-cli train`` reads it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any


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


def split_list(value: Any) -> list[str]:
    """A recipe value that lists names (``a,b`` or a YAML list) as a list of stripped strings."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value]
    return [item.strip() for item in str(value).split(",")]

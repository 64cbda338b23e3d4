"""The recipes and build templates that ship with the package.

In a checkout they are the top-level ``recipes/`` and ``data_templates/`` folders; an installed
package carries the same files as ``seva_plugin.resources.recipes`` and
``seva_plugin.resources.data_templates`` (see ``pyproject.toml``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

KINDS = ("recipes", "data_templates")


def folder(kind: str) -> Path:
    """The folder holding the shipped ``recipes`` or ``data_templates``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    checkout = Path(__file__).resolve().parents[2] / kind  # a source checkout: the top-level folder
    if checkout.is_dir() and (checkout / ".." / "seva_plugin").is_dir():
        return checkout
    return Path(str(files("seva_plugin.resources"))) / kind  # installed: seva_plugin/resources/<kind>/


def path(kind: str, name: str) -> Path:
    """One shipped file, e.g. ``path("recipes", "seva_llava.yaml")``."""
    return folder(kind) / name


def names(kind: str) -> list[str]:
    return sorted(p.name for p in folder(kind).iterdir() if p.suffix in (".yaml", ".json"))

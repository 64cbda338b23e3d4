"""Reading small local files without failing: JSON and YAML mappings, the first record of a data file, paths as shown."""

from __future__ import annotations

import json
import os


def read_json(path: str) -> dict:
    """A JSON object from ``path``; {} if the file is missing, unreadable or not an object."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def read_yaml(path: str) -> dict:
    """A YAML mapping from ``path``; {} if the file is missing, unreadable or not a mapping."""
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, yaml.YAMLError):
        return {}


def section(cfg: dict, key: str) -> dict:
    """``cfg[key]`` when it is a mapping, else {}."""
    value = cfg.get(key)
    return value if isinstance(value, dict) else {}


def first_record(path: str) -> dict | None:
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


def show(path: str) -> str:
    """A path as a user types it: relative to the current directory when inside it."""
    path = os.path.abspath(path)
    cwd = os.getcwd()
    if os.path.commonpath([cwd, path]) == cwd:
        return os.path.relpath(path, cwd)
    return path

"""One rule for "is this a local path or a hub id", used for every model a build names."""

from __future__ import annotations

import os

from seva_plugin.errors import ConfigError


def looks_local(path: str) -> bool:
    """A hub id is ``owner/name``. Anything else, or ``a/b`` whose first part is a local folder
    (``models/llava`` next to a ``models/`` folder), is meant as a local path."""
    if path.startswith((".", "/", "~")) or path.count("/") != 1:
        return True
    return os.path.isdir(path.split("/", 1)[0])


def check_model_path(path: str, key: str) -> None:
    """Fail before anything loads when ``path`` (config key ``key``) is neither a model folder nor a hub id."""
    expanded = os.path.expanduser(path)
    if os.path.isdir(expanded):
        if not os.path.isfile(os.path.join(expanded, "config.json")):
            raise ConfigError(f"{key}: the folder {path} has no config.json, so it is not a model folder.")
    elif looks_local(path):
        raise ConfigError(f"{key}: model path not found: {path}")

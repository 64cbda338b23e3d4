"""``seva recipes``: the LLaMA-Factory recipes and build templates that ship with the package,
listed or copied out (an installed package has no checkout to browse)."""

from __future__ import annotations

import os
import shutil

from seva_plugin import resources
from seva_plugin.errors import ConfigError, did_you_mean


def _first_comment(path) -> str:
    """A file's first comment line, its one-line description."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("#"):
                return line.lstrip("# ").strip()
    return ""


def listing() -> str:
    lines = []
    for kind in resources.KINDS:
        lines.append(f"{kind} ({resources.folder(kind)}):")
        for name in resources.names(kind):
            path = resources.path(kind, name)
            about = _first_comment(path) if name.endswith(".yaml") else "dataset_info.json entries of the datasets these templates build"
            lines.append(f"  {name:<32} {about}")
    lines.append("copy one with: seva recipes copy NAME [--to DIR]")
    return "\n".join(lines)


def find(name: str):
    for kind in resources.KINDS:
        if name in resources.names(kind):
            return resources.path(kind, name)
    known = [n for kind in resources.KINDS for n in resources.names(kind)]
    raise ConfigError(f"no shipped recipe or build template named '{name}'.{did_you_mean(name, known)} See: seva recipes")


def copy(names: list[str], to: str, force: bool = False) -> list[str]:
    """Copy shipped files into ``to``; refuses to replace an existing file unless ``force``."""
    if not names:
        raise ConfigError("name the files to copy, e.g. seva recipes copy seva_llava.yaml seva_llava_t500.yaml")
    sources = [find(n) for n in names]
    os.makedirs(to, exist_ok=True)
    out = []
    for src in sources:
        dest = os.path.join(to, src.name)
        if os.path.exists(dest) and not force:
            raise ConfigError(f"{dest} exists; pass --force to replace it.")
        shutil.copyfile(src, dest)
        out.append(dest)
    return out

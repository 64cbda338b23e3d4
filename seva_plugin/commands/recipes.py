"""``seva recipes``: the LLaMA-Factory recipes and build templates that ship with the package,
listed or copied out (an installed package has no checkout to browse).

A file is named by its kind and name, ``recipes/csr_llava.yaml`` or ``data_templates/csr_llava.yaml``,
as in a checkout; a bare name is accepted when only one kind has it. Copies keep the kind's folder
(``DIR/recipes/...``, ``DIR/data_templates/...``), so the commands in the files' comments and in the
docs work as written from ``DIR``.
"""

from __future__ import annotations

import os
import re
import shutil
import textwrap
from pathlib import Path

from seva_plugin import resources
from seva_plugin.errors import ConfigError, did_you_mean

ABOUT = {"recipes": "training recipes for llamafactory-cli train", "data_templates": "build configs for seva build"}
DATASET_INFO = "dataset_info.json entries of the datasets these templates build, and of the Hub sets the mixing recipe uses."
WIDTH = 120  # characters a listing line may take
SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)[.!?][)\"'`]?(?=\s|$)")  # "e.g." ends no sentence


def description(path: Path) -> str:
    """The whole first paragraph of a file's leading comment, cut after its last complete sentence
    (a paragraph may end in "runs it as" followed by an indented command)."""
    words: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            text = line.rstrip("\n")
            if not text.startswith("#") or text.strip("# ") == "" or text[1:2] == " " and text[2:3].isspace():
                break  # the comment ends, a blank comment line, or an indented example
            words.append(text[1:].strip())
    paragraph = " ".join(words)
    ends = [m.end() for m in SENTENCE_END.finditer(paragraph)]
    return paragraph[: ends[-1]] if ends else paragraph


def listing() -> str:
    lines = []
    entries = [(kind, name) for kind in resources.KINDS for name in resources.names(kind)]
    indent = 3 + max(len(f"{kind}/{name}") for kind, name in entries)
    for kind in resources.KINDS:
        lines.append(f"{kind}/ ({ABOUT[kind]}; from {resources.folder(kind)}):")
        for name in resources.names(kind):
            about = description(resources.path(kind, name)) if name.endswith(".yaml") else DATASET_INFO
            label = f"  {kind}/{name}"
            lines += textwrap.wrap(about, WIDTH, initial_indent=label.ljust(indent), subsequent_indent=" " * indent, break_on_hyphens=False) or [label]
        lines.append("")
    lines.append("copy with: seva recipes copy recipes/NAME data_templates/NAME ... [--to DIR]  (or a whole kind: seva recipes copy data_templates)")
    lines.append("files land in DIR/recipes/ and DIR/data_templates/, where the commands in their comments expect them.")
    return "\n".join(lines)


def find(name: str) -> list[tuple[str, str]]:
    """``(kind, file name)`` of the shipped files ``name`` means: ``KIND/NAME``, a bare ``NAME`` that
    only one kind has, or a whole ``KIND``. A name both kinds have is an error that lists both."""
    name = name.strip().rstrip("/")
    if name in resources.KINDS:
        return [(name, n) for n in resources.names(name)]
    kind, _, file = name.rpartition("/")
    kinds = [os.path.basename(kind)] if kind else list(resources.KINDS)
    known = [f"{k}/{n}" for k in resources.KINDS for n in resources.names(k)]
    bare = [n for k in resources.KINDS for n in resources.names(k)]
    if kind and kinds[0] not in resources.KINDS:
        raise ConfigError(f"'{name}': the kind must be one of {', '.join(k + '/' for k in resources.KINDS)}.{did_you_mean(name, known)} See: seva recipes")
    found = [(k, file) for k in kinds if file in resources.names(k)]
    if len(found) > 1:
        both = " and ".join(f"{k}/{file}" for k, _ in found)
        raise ConfigError(f"'{name}' is both a training recipe and a build template: name one, {both}.")
    if not found:
        raise ConfigError(f"no shipped recipe or build template named '{name}'.{did_you_mean(name, known + bare)} See: seva recipes")
    return found


def copy(names: list[str], to: str, force: bool = False) -> list[str]:
    """Copy shipped files into ``to/<kind>/``; refuses to replace an existing file unless ``force``.
    Every name is resolved and every destination checked before anything is written."""
    if not names:
        raise ConfigError("name the files to copy, e.g. seva recipes copy recipes/seva_llava.yaml data_templates/seva_llava_t500.yaml")
    chosen = list(dict.fromkeys(item for n in names for item in find(n)))
    plan = [(resources.path(kind, file), os.path.join(to, kind, file)) for kind, file in chosen]
    existing = [dest for _, dest in plan if os.path.exists(dest)]
    if existing and not force:
        raise ConfigError(f"{', '.join(existing)} exist{'s' if len(existing) == 1 else ''}; pass --force to replace.")
    for src, dest in plan:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(src, dest)
    return [dest for _, dest in plan]

"""Docs that cannot drift: every repository path a doc or a pyproject.toml comment names exists,
every link resolves (anchors included), and docs/config.md's key tables list exactly the keys
each component takes (its constructor's parameters, less what the build supplies)."""

from __future__ import annotations

import inspect
import os
import re
from pathlib import Path

import pytest

from helpers import REPO

ROOT = Path(REPO)
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
TOP = ("seva_plugin", "tests", "docs", "recipes", "data_templates", "benchmarks", ".ci")  # folders a path may start with
TOP_FILES = ("pyproject.toml", "Makefile", "README.md", ".pre-commit-config.yaml")
PACKAGE_DIRS = ("pipeline", "plugins", "commands", "dev", "resources")  # named without seva_plugin/ in backticks


# -- paths ---------------------------------------------------------------------------------------
REPO_PATH = re.compile(rf"(?<![\w./-])((?:{'|'.join(re.escape(t) for t in TOP)})/[\w./-]*|(?:{'|'.join(re.escape(f) for f in TOP_FILES)})(?![\w.-]))")
BACKTICKED = re.compile(r"`([^`\s]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def repo_paths(text: str) -> set[str]:
    """Repository paths named in ``text``: anything starting with a top-level folder or file of the
    checkout, and, in backticks, a path under one of the package's folders."""
    found = {m.group(1).rstrip(".,:;") for m in REPO_PATH.finditer(text) if text[m.end() : m.end() + 1] not in ("{", "*", "<")}
    for token in BACKTICKED.findall(text):
        token = re.split(r"::|:\d|#", token)[0].rstrip(".,:;")
        if token.split("/", 1)[0] in PACKAGE_DIRS and "/" in token:
            found.add("seva_plugin/" + token)
    return {p for p in found if not re.search(r"[*{<]", p)}


def pyproject_comments() -> str:
    lines = (ROOT / "pyproject.toml").read_text(encoding="utf-8").splitlines()
    return "\n".join(line.split("#", 1)[1] for line in lines if "#" in line)


def test_repo_paths_are_found():
    text = "see `tests/a.py::test_b`, tests/c.py. and `pipeline/batch.py`; data/x.json and /tmp/tests/x stay out; seva_plugin/{a,b}/"
    assert repo_paths(text) == {"tests/a.py", "tests/c.py", "seva_plugin/pipeline/batch.py"}


def outputs() -> tuple[str, ...]:
    """Folders the checkout's own commands make (anchored entries of .gitignore, such as benchmarks/wheels/)."""
    lines = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    return tuple(line.strip("/") for line in lines if line.startswith("/"))


# The changelog names paths as they were when each entry was written.
@pytest.mark.parametrize("doc", [*(d for d in DOCS if d.name != "CHANGELOG.md"), ROOT / "pyproject.toml"], ids=lambda p: os.path.relpath(p, REPO))
def test_every_path_a_doc_names_exists(doc):
    text = pyproject_comments() if doc.name == "pyproject.toml" else doc.read_text(encoding="utf-8")
    named = {p for p in repo_paths(text) if not any(f"{p}/".startswith(f"{out}/") for out in outputs())}
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"{os.path.relpath(doc, REPO)} names paths that do not exist: {missing}"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, re.M)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: os.path.relpath(p, REPO))
def test_every_link_resolves(doc):
    broken = []
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # a URL
        path, _, anchor = target.partition("#")
        where = (doc.parent / path).resolve() if path else doc
        if not where.exists():
            broken.append(target)
        elif anchor and where.suffix == ".md" and anchor not in anchors(where):
            broken.append(target)
    assert not broken, f"{os.path.relpath(doc, REPO)} links to what is not there: {broken}"


# -- docs/config.md's key tables ------------------------------------------------------------------
CONTEXT = {"source": {"seed"}, "backend": {"model", "template"}, "writer": {"dataset_dir", "dataset_name"}}  # what the build supplies
SECTIONS = {"source": "source", "augment": "augmenter", "strategy": "strategy", "backend": "backend", "filters": "filter"}


def sections(text: str) -> dict[str, str]:
    """``## heading`` (backticks dropped) -> its text."""
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {parts[i].strip().strip("`"): parts[i + 1] for i in range(1, len(parts), 2)}


def table(text: str) -> list[list[str]]:
    """The rows (cells) of the first Markdown table in ``text``, header and rule left out."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|"):
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
        elif rows:
            break
    return rows[2:]


def keys_in(cell: str) -> set[str]:
    """The keys a "keys" cell lists: the backticked names outside parentheses (inside them are
    defaults and explanations)."""
    depth, outside = 0, []
    for ch in re.sub(r"\[[^\]]*\]\([^)]*\)", "", cell):  # links are no keys
        depth += ch == "("
        outside.append(ch if depth == 0 else " ")
        depth -= ch == ")" and depth > 0
    return set(re.findall(r"`([a-z_][a-z0-9_]*)`", "".join(outside))) - {"none"}


def test_keys_in_reads_keys_not_values():
    assert keys_in("`a` (512; `auto` or `b`), `c`, `d` ([why](x.md#e)) and `e`") == {"a", "c", "d", "e"}


def documented() -> dict[tuple[str, str], set[str]]:
    """(kind, name) -> the keys docs/config.md lists for it."""
    text = sections((ROOT / "docs" / "config.md").read_text(encoding="utf-8"))
    out = {}
    for section, kind in SECTIONS.items():
        header = [c.strip("` ") for c in text[section].split("\n|", 1)[1].split("\n", 1)[0].split("|")]
        column = header.index("keys")
        for row in table(text[section]):
            name = re.match(r"`([\w-]+)`", row[0]).group(1)
            out[kind, name] = keys_in(row[column])
    for name, body in re.findall(r"^Writer `(\w+)`.*?:\n\n(\|.*?)(?:\n\n|\Z)", text["output"], flags=re.M | re.S):
        out["writer", name] = {re.match(r"`(\w+)`", row[0]).group(1) for row in table(body)}
    return out


def accepted() -> dict[tuple[str, str], set[str]]:
    """(kind, name) -> the keys each registered component takes from a config."""
    from seva_plugin.registry import KINDS, get_registry

    registry, out = get_registry(), {}
    for kind in KINDS:
        for name in registry.names(kind):
            params = inspect.signature(registry.get(kind, name).cls).parameters
            out[kind, name] = set(params) - CONTEXT.get(kind, set())
    return out


def test_config_md_lists_exactly_each_components_keys():
    docs, code = documented(), accepted()
    assert sorted(docs) == sorted(code), "components with a row in docs/config.md vs registered ones"
    wrong = {
        f"{kind} {name}": {"undocumented": sorted(code[kind, name] - keys), "not a key": sorted(keys - code[kind, name])}
        for (kind, name), keys in docs.items()
        if keys != code[kind, name]
    }
    assert not wrong, f"docs/config.md vs the components' constructors: {wrong}"


def test_config_md_top_level_and_output_keys():
    from dataclasses import fields

    from seva_plugin.pipeline.config import OUTPUT_KEYS, BuildConfig

    text = sections((ROOT / "docs" / "config.md").read_text(encoding="utf-8"))
    top = {re.match(r"`(\w+)`", row[0]).group(1) for row in table(text["Top level"])}
    output = {re.match(r"`(\w+)`", row[0]).group(1) for row in table(text["output"])}
    assert top == {f.name for f in fields(BuildConfig)}
    assert output == set(OUTPUT_KEYS)


def test_csr_md_configuration_shows_every_csr_key():
    import yaml

    text = (ROOT / "docs" / "csr.md").read_text(encoding="utf-8")
    block = re.search(r"### Configuration\n\n```yaml\n(.*?)```", text, re.S).group(1)
    shown = set(yaml.safe_load(block)["strategy"]) - {"name"}
    assert shown == accepted()["strategy", "csr"]

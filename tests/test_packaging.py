"""pyproject.toml lists the packages a wheel holds (two come from folders outside seva_plugin/):
the list must name every package folder, and each name must lead to a folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import REPO

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(REPO)


def setuptools_config() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["tool"]["setuptools"]


def folder_of(package: str, package_dir: dict[str, str]) -> Path:
    return ROOT / package_dir.get(package, package.replace(".", "/"))


def test_every_package_folder_is_listed():
    listed = set(setuptools_config()["packages"])
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "seva_plugin").rglob("*.py")}
    assert folders - listed == set(), "package folders missing from [tool.setuptools] packages (a wheel would leave them out)"


def test_every_listed_package_has_its_folder_and_files():
    config = setuptools_config()
    package_dir, package_data = config.get("package-dir", {}), config.get("package-data", {})
    for package in config["packages"]:
        folder = folder_of(package, package_dir)
        assert folder.is_dir(), f"{package}: no folder {folder}"
        patterns = package_data.get(package, [])
        assert (folder / "__init__.py").is_file() or patterns, f"{package}: neither an __init__.py nor package data"
        for pattern in patterns:
            assert list(folder.glob(pattern)), f"{package}: package data {pattern} matches nothing in {folder}"

"""The version lives in one place, pyproject.toml: ``seva_plugin.__version__`` is read from the
installed package's metadata."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re

import pytest

import seva_plugin
from helpers import REPO


@pytest.fixture
def reload_after(monkeypatch):
    yield
    monkeypatch.undo()
    importlib.reload(seva_plugin)


def test_the_version_is_pyprojects():
    with open(os.path.join(REPO, "pyproject.toml"), encoding="utf-8") as fh:
        declared = re.search(r'^version = "([^"]+)"$', fh.read(), re.M).group(1)
    assert seva_plugin.__version__ == importlib.metadata.version("seva-plugin") == declared


def test_the_version_comes_from_the_package_metadata(monkeypatch, reload_after):
    monkeypatch.setattr(importlib.metadata, "version", lambda name: {"seva-plugin": "9.8.7"}[name])
    assert importlib.reload(seva_plugin).__version__ == "9.8.7"


def test_a_checkout_that_was_never_installed_says_so(monkeypatch, reload_after):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert importlib.reload(seva_plugin).__version__ == "0+unknown"

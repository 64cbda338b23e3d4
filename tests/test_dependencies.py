"""The package declares ranges (it installs into an existing LLaMA-Factory environment); the tested set is
pinned in tests/constraints.txt, which `make install` uses, and which lies inside those ranges."""

from __future__ import annotations

import os
import re

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from helpers import REPO
from seva_plugin.commands.check_recipe.environment import TESTED

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def declared() -> dict[str, SpecifierSet]:
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as fh:
        project = tomllib.load(fh)["project"]
    lines = [*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)]
    return {(req := Requirement(line)).name.lower(): req.specifier for line in lines}


def pins() -> dict[str, str]:
    out = {}
    with open(os.path.join(REPO, "tests", "constraints.txt")) as fh:
        for line in fh:
            if line.strip() and not line.startswith("#"):
                name, version = line.strip().split("==")
                out[name.lower()] = version
    return out


def test_dependencies_are_ranges_and_the_tested_set_lies_inside_them():
    ranges, tested = declared(), pins()
    assert not [name for name, spec in ranges.items() if any(s.operator in ("==", "===") for s in spec)]  # no exact pins
    for name, spec in ranges.items():
        if name in tested:  # flash-attn and CUDA vllm are not installed on the CPU test machines
            assert spec.contains(tested[name]), (name, str(spec), tested[name])
    assert {"torch", "torchvision", "transformers", "llamafactory", "datasets", "ray"} <= set(tested)


def test_known_breaks_are_excluded_and_a_compatible_torch_is_kept():
    ranges = declared()
    # 5.6.0's FlashAttention-2 crash (LLaMA-Factory #10610) is warned about, not excluded (sdpa works with it);
    # 5.5.4, the release without it, is the tested one
    assert ranges["transformers"].contains("5.5.4") and ranges["transformers"].contains("5.6.0")
    assert not ranges["transformers"].contains("5.0.0")
    assert not ranges["torch"].contains("2.9.1")  # LLaMA-Factory refuses Conv3d models under torch 2.9
    # a host's own CUDA or CPU build of the tested torch satisfies the range: pip keeps it, no reinstall
    assert ranges["torch"].contains("2.11.0+cu128") and ranges["torch"].contains("2.11.0+cpu")


def test_doctor_knows_the_pinned_set():
    tested = pins()
    assert {name: tested[name] for name in TESTED} == TESTED


def test_make_install_and_ci_use_the_constraints():
    with open(os.path.join(REPO, "Makefile")) as fh:
        makefile = fh.read()
    installs = [line for line in makefile.splitlines() if re.search(r"pip install (?!--upgrade pip)", line)]
    assert installs and all("-c tests/constraints.txt" in line for line in installs), installs
    assert re.search(r"^\$\(VENV\)/\.installed:.*tests/constraints\.txt", makefile, re.M)  # a new pin reinstalls

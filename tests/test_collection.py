"""The guard in conftest.py: a run over the whole suite fails when a test file is not collected."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from helpers import uncollected

TESTS = os.path.dirname(os.path.abspath(__file__))


def test_uncollected_names_the_files_a_run_missed(tmp_path):
    a, b = tmp_path / "test_a.py", tmp_path / "build" / "test_b.py"
    assert uncollected([str(a), str(b)], [str(a)]) == [str(b)]
    assert uncollected([str(a)], [str(a)]) == []


def _collect(root) -> subprocess.CompletedProcess:
    """``pytest --collect-only`` over ``root/tests`` with the project's conftest, helpers and settings."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-c", str(root / "pytest.ini"), str(root / "tests")],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
    )


def test_a_test_file_under_a_skipped_folder_fails_the_run(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    for name in ("conftest.py", "helpers.py"):
        shutil.copy(os.path.join(TESTS, name), tests / name)
    (tmp_path / "pytest.ini").write_text("[pytest]\ntestpaths = tests\npythonpath = tests\n")
    (tests / "test_here.py").write_text("def test_one():\n    assert True\n")
    ok = _collect(tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "collected 1 tests from all 1 test files under tests/ (1 selected)" in ok.stdout

    (tests / "build").mkdir()  # pytest's default norecursedirs skips it
    (tests / "build" / "test_hidden.py").write_text("def test_two():\n    assert True\n")
    hidden = _collect(tmp_path)
    assert hidden.returncode != 0
    assert "build/test_hidden.py" in hidden.stdout + hidden.stderr

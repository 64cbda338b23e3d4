"""The guard in conftest.py: a test that starts llamafactory-cli, seva or a Ray node must be marked slow."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import heavy_program


def test_heavy_programs_are_recognised():
    assert heavy_program(["/venv/bin/llamafactory-cli", "train", "x.yaml"]) == "llamafactory-cli"
    assert heavy_program("seva build x.yaml") == "seva"
    assert heavy_program([sys.executable, "-m", "llamafactory.cli", "train"]) == "llamafactory.cli"
    assert heavy_program([sys.executable, "-m", "seva_plugin.commands.cli", "build"]) == "seva_plugin.commands.cli"
    assert heavy_program(["/tmp/ray/session/raylet", "--node_ip_address=127.0.0.1"]) == "raylet"
    assert heavy_program([sys.executable, "-c", "import seva_plugin.commands.cli"]) is None
    assert heavy_program(["uname", "-p"]) is None and heavy_program([]) is None


def test_an_unmarked_test_that_starts_llamafactory_cli_fails():
    with pytest.raises(pytest.fail.Exception, match="starts llamafactory-cli but is not marked @pytest.mark.slow"):
        subprocess.run(["llamafactory-cli", "version"], capture_output=True)


@pytest.mark.slow
def test_a_slow_test_may_start_it():
    from seva_plugin.commands.host import llamafactory_cli

    assert subprocess.run([llamafactory_cli(), "version"], capture_output=True, timeout=300).returncode == 0

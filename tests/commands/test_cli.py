"""The ``seva`` command line: overrides anywhere, shipped recipes, clear errors."""

from __future__ import annotations

import pytest

from seva_plugin.commands.cli import main, parse_args


def test_overrides_are_accepted_anywhere_on_the_line():
    """``docs/csr.md`` shows ``seva iterate B R --rounds 2 --work-dir D model=...``; it used to fail."""
    args = parse_args(["iterate", "b.yaml", "r.yaml", "--rounds", "2", "--work-dir", "d", "model=x", "train.learning_rate=1e-5"])
    assert (args.build, args.recipe, args.rounds, args.work_dir) == ("b.yaml", "r.yaml", 2, "d")
    assert args.overrides == ["model=x", "train.learning_rate=1e-5"]
    args = parse_args(["build", "c.yaml", "seed=1", "--no-progress", "augment.step=800"])
    assert args.overrides == ["seed=1", "augment.step=800"] and args.no_progress
    with pytest.raises(SystemExit):
        parse_args(["build", "c.yaml", "--unknown-flag"])
    with pytest.raises(SystemExit):
        parse_args(["plugins", "seed=1"])  # plugins takes no overrides


def test_recipes_list_and_copy(tmp_path, capsys):
    assert main(["recipes"]) == 0
    listing = capsys.readouterr().out
    assert "seva_llava.yaml" in listing and "seva_llava_t500.yaml" in listing
    assert main(["recipes", "copy", "seva_llava.yaml", "seva_llava_t500.yaml", "--to", str(tmp_path)]) == 0
    assert (tmp_path / "seva_llava.yaml").read_text().startswith("#")
    assert main(["recipes", "copy", "seva_llava.yaml", "--to", str(tmp_path)]) == 2  # exists: refused
    assert "--force" in capsys.readouterr().err
    assert main(["recipes", "copy", "seva_lava.yaml", "--to", str(tmp_path)]) == 2
    assert "Did you mean 'seva_llava.yaml'" in capsys.readouterr().err

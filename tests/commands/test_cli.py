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
    assert "recipes/seva_llava.yaml" in listing and "data_templates/seva_llava_t500.yaml" in listing
    assert main(["recipes", "copy", "seva_llava.yaml", "data_templates/seva_llava_t500.yaml", "--to", str(tmp_path)]) == 0
    assert (tmp_path / "recipes" / "seva_llava.yaml").read_text().startswith("#")  # the kind's folder, as the comments' commands expect
    assert (tmp_path / "data_templates" / "seva_llava_t500.yaml").read_text().startswith("#")
    assert main(["recipes", "copy", "recipes/seva_llava.yaml", "--to", str(tmp_path)]) == 2  # exists: refused
    assert "--force" in capsys.readouterr().err
    assert main(["recipes", "copy", "seva_lava.yaml", "--to", str(tmp_path)]) == 2
    assert "Did you mean 'seva_llava.yaml'" in capsys.readouterr().err


def test_recipes_tells_a_recipe_from_a_build_template_of_the_same_name(tmp_path, capsys):
    """csr_llava.yaml is both: the bare name used to copy the recipe silently, and
    data_templates/csr_llava.yaml was refused, so a pip user could not get the CSR build template."""
    from seva_plugin import resources

    assert "csr_llava.yaml" in resources.names("recipes") and "csr_llava.yaml" in resources.names("data_templates")
    assert main(["recipes", "copy", "csr_llava.yaml", "--to", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "recipes/csr_llava.yaml" in err and "data_templates/csr_llava.yaml" in err
    assert not any(tmp_path.iterdir())  # nothing copied
    assert main(["recipes", "copy", "recipes/csr_llava.yaml", "data_templates/csr_llava.yaml", "--to", str(tmp_path)]) == 0
    assert (tmp_path / "recipes" / "csr_llava.yaml").read_bytes() == resources.path("recipes", "csr_llava.yaml").read_bytes()
    assert (tmp_path / "data_templates" / "csr_llava.yaml").read_bytes() == resources.path("data_templates", "csr_llava.yaml").read_bytes()
    assert main(["recipes", "copy", "datatemplates/csr_llava.yaml", "--to", str(tmp_path)]) == 2
    assert "data_templates/" in capsys.readouterr().err


def test_recipes_copies_a_whole_kind(tmp_path):
    from seva_plugin import resources

    assert main(["recipes", "copy", "data_templates", "--to", str(tmp_path)]) == 0
    assert sorted(p.name for p in (tmp_path / "data_templates").iterdir()) == resources.names("data_templates")


def test_recipes_listing_shows_whole_descriptions(capsys):
    """Descriptions were each file's first comment line, often cut mid-sentence."""
    from seva_plugin import resources
    from seva_plugin.commands.recipes import description

    assert main(["recipes"]) == 0
    flat = " ".join(capsys.readouterr().out.split())  # the listing wraps lines
    cut = []
    for kind in resources.KINDS:
        for name in resources.names(kind):
            if not name.endswith(".yaml"):
                continue
            about = description(resources.path(kind, name))
            if not about.endswith((".", ".)", "?", "!")):
                cut.append(f"{kind}/{name}: {about!r}")
            assert f"{kind}/{name} {about}" in flat
    assert not cut, cut
    # the first paragraph, not the first line; an example command after it is left out
    whole = "the demo's shapes world. Full fine-tuning of every part, vision tower included: the weights start random, so there is nothing to preserve."
    assert description(resources.path("recipes", "demo_sft_cpu.yaml")).endswith(whole)
    assert "Override the paths, e.g." not in description(resources.path("recipes", "tiny_dpo_cpu.yaml"))

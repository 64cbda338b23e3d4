"""How loud a command is (issue 24, point 4): the libraries at WARNING unless --verbose, transformers'
use_fast deprecation dropped wherever a processor loads, Ray workers' output kept off the driver, and
a vLLM build that prints neither INFO lines nor vLLM's forced-shutdown messages."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from seva_plugin import logs
from seva_plugin.commands.cli import parse_args

VARIABLES = ("VLLM_LOGGING_LEVEL", "TRANSFORMERS_VERBOSITY", "LLAMAFACTORY_VERBOSITY")


@pytest.fixture
def fresh_env(monkeypatch):
    for name in VARIABLES:
        monkeypatch.setenv(name, "")  # recorded, so what main() sets is undone after the test
        monkeypatch.delenv(name)
    monkeypatch.setattr(logs, "_quiet", False)
    for name in ("vllm", "transformers", "llamafactory"):  # the loggers quiet_libraries may set
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "level", logger.level)


@pytest.mark.parametrize("verbose", [False, True])
def test_a_command_sets_the_libraries_levels(fresh_env, tmp_path, verbose):
    import transformers  # noqa: F401 - imported already: its logger is set as well as its variable

    from seva_plugin.commands.cli import main

    assert main(["build", str(tmp_path / "missing.yaml"), *(["--verbose"] if verbose else [])]) == 2  # set before the command runs
    level = "INFO" if verbose else "WARNING"
    assert os.environ["VLLM_LOGGING_LEVEL"] == level and os.environ["TRANSFORMERS_VERBOSITY"] == level.lower()
    assert os.environ["LLAMAFACTORY_VERBOSITY"] == level
    assert logs.quiet() is not verbose
    assert logging.getLogger("transformers").level == getattr(logging, level)


def test_a_level_the_user_set_is_kept(fresh_env, monkeypatch):
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "DEBUG")
    logs.quiet_libraries()
    assert os.environ["VLLM_LOGGING_LEVEL"] == "DEBUG" and os.environ["TRANSFORMERS_VERBOSITY"] == "warning"


def test_verbose_is_an_option_of_build_iterate_and_demo():
    assert parse_args(["build", "c.yaml", "--verbose"]).verbose
    assert parse_args(["iterate", "b.yaml", "r.yaml", "--work-dir", "w", "--verbose"]).verbose
    assert parse_args(["demo", "--verbose"]).verbose
    assert not parse_args(["build", "c.yaml"]).verbose


def test_loading_a_processor_drops_the_use_fast_deprecation(tiny_llava, caplog):
    """LLaMA-Factory's load_tokenizer passes use_fast, and transformers warned in every run and every
    Ray worker. Loading a renderer (every backend, in every process) installs the filter."""
    from seva_plugin.plugins.backends.loading import infer_args
    from seva_plugin.rendering import Renderer

    logger = logging.getLogger(logs.IMAGE_PROCESSING_LOGGER)
    for f in list(logger.filters):
        logger.removeFilter(f)
    Renderer.from_args(*infer_args(tiny_llava, "llava")[:2])
    assert any(isinstance(f, logs._DropMessage) for f in logger.filters)
    with caplog.at_level(logging.WARNING, logger=logs.IMAGE_PROCESSING_LOGGER):
        logger.warning("The `use_fast` parameter is deprecated and will be removed in a future version.")
        logger.warning("another warning")
    assert [r.getMessage() for r in caplog.records if r.name == logs.IMAGE_PROCESSING_LOGGER] == ["another warning"]


def test_our_ray_keeps_its_workers_output_off_the_driver(monkeypatch):
    """Ray workers' output ran through the progress bar; their errors still come back through ray.get."""
    import ray

    from seva_plugin.errors import ConfigError
    from seva_plugin.pipeline.ray_settings import ray_settings
    from seva_plugin.pipeline.ray_workers import RayWorkers

    seen: dict = {}

    def fake_init(**kwargs):
        seen.update(kwargs)
        raise ConnectionError("stop here")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", fake_init)
    for quiet, to_driver in ((True, False), (False, True)):
        monkeypatch.setattr(logs, "_quiet", quiet)
        with pytest.raises(ConfigError):
            RayWorkers(SimpleNamespace(backend_params={}), ray_settings({"num_workers": 2})).start()
        assert seen["log_to_driver"] is to_driver


@pytest.mark.slow
def test_a_vllm_build_prints_no_info_and_shuts_the_engine_down_cleanly(tmp_path):
    """About 80 vLLM INFO/WARNING lines a build, and "force killing remaining processes" / "leaked
    shared_memory objects" after a clean run (vLLM's 5 s shutdown wait ran out on a busy machine)."""
    pytest.importorskip("vllm")
    import json

    from helpers import make_images
    from seva_plugin.dev.tiny_models import build_tiny_llava

    model = build_tiny_llava(tmp_path / "llava", seed=0, head_dim=32)
    names = make_images(tmp_path / "images", 2)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "image": f"images/{n}", "question": "Colour?"}) + "\n" for i, n in enumerate(names)))
    config = tmp_path / "b.yaml"
    config.write_text(
        f"model: {model}\ntemplate: llava\nsource: {{file: {prompts}}}\nbackend: {{name: vllm, max_new_tokens: 6, max_model_len: 512}}\nfilters: [empty]\n"
        f"output: {{dataset_dir: {tmp_path / 'data'}, name: quiet}}\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    run = subprocess.run(
        [sys.executable, "-m", "seva_plugin.commands.cli", "build", str(config)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line for line in run.stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert not [line for line in lines if " INFO " in line or line.startswith("INFO")], lines
    for noise in ("force killing", "leaked shared_memory", "use_fast", "Traceback"):
        assert not [line for line in lines if noise in line], (noise, lines)
    assert "2 pairs kept" in run.stdout

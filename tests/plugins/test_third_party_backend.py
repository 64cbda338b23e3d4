"""The example third-party backend of docs/plugins.md, installed as a real entry-point plugin.

``docs/examples/plain_transformers_backend`` is pip-installed into a temporary folder (not into
the virtual environment), and ``seva`` runs in a subprocess with that folder on ``PYTHONPATH``:
the plugin is found through the ``seva_plugin`` entry-point group, as any installed package is.
Both strategies then build with it on the tiny LLaVA twin: SeVa (two views, greedy) and CSR
(prefixes, ``n`` seeded samples, stop strings, log-probabilities).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, read_jsonl

pytestmark = pytest.mark.slow

EXAMPLE = os.path.join(REPO, "docs", "examples", "plain_transformers_backend")
MODULE = "plain_transformers_backend"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> str:
    """The example pip-installed (a wheel built from a copy, so the checkout stays clean) into a folder."""
    root = tmp_path_factory.mktemp("third_party")
    source, target = root / "source", root / "site"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--target", str(target), str(source)], check=True, capture_output=True, text=True, timeout=300)
    assert (target / f"{MODULE}.py").is_file()
    assert any(p.name.endswith(".dist-info") and (p / "entry_points.txt").is_file() for p in target.iterdir())
    return str(target)


def seva(site: str, *args: str) -> str:
    """``seva ARGS`` in a fresh interpreter that sees the installed plugin only through PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([site, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep), "OMP_NUM_THREADS": "1"}
    code = "import sys; from seva_plugin.commands.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def build_with_plugin(site: str, config: dict, tmp_path, **changes) -> tuple[list[dict], dict]:
    cfg = {**config, "backend": {"name": "plain_transformers", "batch_size": 4, "max_new_tokens": 8}, **changes}
    path = tmp_path / "build.yaml"
    path.write_text(yaml.safe_dump(cfg))
    seva(site, "build", str(path), "--no-progress")
    out = cfg["output"]
    with open(os.path.join(out["dataset_dir"], f"{out['name']}.manifest.json")) as fh:
        manifest = json.load(fh)
    return read_jsonl(os.path.join(out["dataset_dir"], f"{out['name']}.jsonl")), manifest


def test_seva_plugins_lists_the_installed_backend(installed):
    rows = [line.split() for line in seva(installed, "plugins").splitlines()]
    assert ["backend", "plain_transformers", "plain_transformers"] in rows  # kind, name, the entry point's plugin name
    assert ["backend", "hf", "seva_plugin.plugins.backends.hf"] in rows  # the built-ins are still there


def test_seva_strategy_builds_with_the_plugin_and_its_answers_are_the_backends(installed, build_config, tmp_path, monkeypatch):
    rows, manifest = build_with_plugin(installed, build_config, tmp_path, strategy="seva")
    assert manifest["config"]["backend"]["name"] == "plain_transformers"
    counts = manifest["counts"]
    assert counts["records"] == 10 and counts["kept"] == len(rows) >= 3
    assert set(counts["dropped"]) <= {"identical", "empty"}
    for row in rows:
        assert row["provenance"]["strategy"] == "seva" and row["provenance"]["augment"] == "diffusion_noise"
        assert row["chosen"]["value"] != row["rejected"]["value"]

    # The same answers in this process, through the contract: clean view 0 and noised view 1,
    # seeded by the record: the build's views are rebuilt exactly, in another process and batch.
    from seva_plugin.build.images import load_rgb
    from seva_plugin.build.records import LoadedRecord, PromptRecord
    from seva_plugin.build.views import record_seed
    from seva_plugin.interfaces import GenerationRequest, View
    from seva_plugin.registry import get_registry

    spec = importlib.util.spec_from_file_location(MODULE, os.path.join(installed, f"{MODULE}.py"))
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, MODULE, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    backend = module.PlainTransformersBackend(model=build_config["model"], max_new_tokens=8)
    augmenter = get_registry().get("augmenter", "diffusion_noise").build({"step": 800})
    folder = os.path.dirname(build_config["source"]["file"])
    for row in rows[:3]:
        images = [os.path.join(folder, p) for p in row["images"]]
        record = PromptRecord(row["id"], row["conversations"][0]["value"], images)
        loaded = LoadedRecord(record, [load_rgb(p) for p in images], record_seed(0, row["id"]))
        assert row["provenance"]["seed"] == loaded.seed
        clean, noised = backend.generate([GenerationRequest(loaded), GenerationRequest(loaded, View(1, augmenter))])
        assert (clean.texts, noised.texts) == ([row["chosen"]["value"]], [row["rejected"]["value"]])
        assert clean.finish_reasons[0] in ("eos", "length") and clean.logprobs is None


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> str:
    """The tiny CLIP of CSR's visual score (built once per session, at the path the CSR tests use)."""
    from seva_plugin.dev.tiny_models import build_tiny_clip

    path = os.path.join(tmp_path_factory.getbasetemp(), "csr_tiny_clip")
    if not os.path.isfile(os.path.join(path, "config.json")):
        build_tiny_clip(path, seed=0)
    return path


def test_csr_strategy_builds_scored_pairs_with_the_plugin(installed, build_config, tiny_clip, tmp_path):
    strategy = {"name": "csr", "clip_model": tiny_clip, "num_proposals": 3, "max_sentence_tokens": 5, "max_response_chars": 40}
    rows, manifest = build_with_plugin(installed, build_config, tmp_path, strategy=strategy, limit=4)
    assert manifest["config"]["backend"]["name"] == "plain_transformers"
    assert manifest["counts"]["records"] == 4 and manifest["counts"]["kept"] == len(rows) >= 1
    for row in rows:
        assert row["provenance"]["strategy"] == "csr" and row["provenance"]["augment"] is None
        assert row["chosen"]["value"] != row["rejected"]["value"]
        scores = row["scores"]
        assert scores["method"] == "csr" and scores["search"]["proposals"] >= 3 and scores["search"]["candidates"] >= 2
        assert scores["search"]["generated_tokens"] <= 5 * scores["search"]["proposals"]  # max_sentence_tokens per proposal

"""The example third-party backend of docs/plugins.md: the conformance kit in this process, and installed as a real
entry-point plugin (slow tests).

``docs/examples/plain_transformers_backend`` is pip-installed into a temporary folder (not into
the virtual environment), and ``seva`` runs in a subprocess with that folder on ``PYTHONPATH``:
the plugin is found through the ``seva_plugin`` entry-point group, as any installed package is.
Both strategies then build with it on the tiny LLaVA twin: SeVa (two views, greedy) and CSR
(prefixes, ``n`` seeded samples, stop strings, log-probabilities). The two builds share one
interpreter (``seva build`` twice through the CLI's ``main``): importing torch, transformers and
LLaMA-Factory is most of a build's time here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from helpers import REPO, make_images, read_jsonl
from seva_plugin.testing import BackendContract

EXAMPLE = os.path.join(REPO, "docs", "examples", "plain_transformers_backend")
MODULE = "plain_transformers_backend"
BACKEND = {"name": "plain_transformers", "batch_size": 4, "max_new_tokens": 8}
CSR = {"name": "csr", "num_proposals": 3, "max_sentence_tokens": 5, "max_response_chars": 40}  # a small search


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> str:
    """The example pip-installed into a folder (from a copy, so the checkout stays clean)."""
    root = tmp_path_factory.mktemp("third_party")
    source, target = root / "source", root / "site"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--target", str(target), str(source)], check=True, capture_output=True, text=True, timeout=300)
    assert (target / f"{MODULE}.py").is_file()
    assert any(p.name.endswith(".dist-info") and (p / "entry_points.txt").is_file() for p in target.iterdir())
    return str(target)


def seva(site: str, *commands: list[str]) -> str:
    """``seva`` with each of ``commands`` in turn, in one fresh interpreter that sees the installed
    plugin only through ``PYTHONPATH``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (site, os.environ.get("PYTHONPATH")) if p), "OMP_NUM_THREADS": "1"}
    code = "import json, sys; from seva_plugin.commands.cli import main; [main(args) for args in json.loads(sys.argv[1])]"
    done = subprocess.run([sys.executable, "-c", code, json.dumps(commands)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def builds(installed, tiny_llava, tiny_clip, tmp_path_factory) -> dict:
    """``seva build`` with ``backend.name=plain_transformers``: strategy seva on 10 prompts, then csr on 4.
    Returns, per strategy, its config, data rows and manifest."""
    root = tmp_path_factory.mktemp("third_party_builds")
    with open(root / "prompts.jsonl", "w") as fh:
        for i, name in enumerate(make_images(root / "images", 10)):
            fh.write(json.dumps({"id": f"p{i}", "image": f"images/{name}", "question": "What colour is the square?"}) + "\n")
    common = {"model": tiny_llava, "template": "llava", "source": {"file": str(root / "prompts.jsonl"), "format": "jsonl"}, "backend": BACKEND, "seed": 0}
    configs = {
        "seva": {
            **common,
            "strategy": "seva",
            "augment": {"name": "diffusion_noise", "step": 800},
            "output": {"dataset_dir": str(root / "data"), "name": "seva_tp"},
        },
        "csr": {**common, "strategy": {**CSR, "clip_model": tiny_clip}, "limit": 4, "output": {"dataset_dir": str(root / "data"), "name": "csr_tp"}},
    }
    for strategy, cfg in configs.items():
        (root / f"{strategy}.yaml").write_text(yaml.safe_dump(cfg))
    seva(installed, *[["build", str(root / f"{strategy}.yaml"), "--no-progress"] for strategy in configs])
    out = {}
    for strategy, cfg in configs.items():
        base = os.path.join(cfg["output"]["dataset_dir"], cfg["output"]["name"])
        with open(base + ".manifest.json") as fh:
            out[strategy] = cfg, read_jsonl(base + ".jsonl"), json.load(fh)
    return out


@pytest.fixture(scope="module")
def backend(installed, tiny_llava):
    """The installed example's backend, in this process (its module loaded from the install folder)."""
    try:
        yield load_example(os.path.join(installed, f"{MODULE}.py")).PlainTransformersBackend(model=tiny_llava, template="llava", max_new_tokens=8)
    finally:
        sys.modules.pop(MODULE, None)


def load(record_id: str, prompt: str, images: list[str]):
    """A ``LoadedRecord`` as the build makes it (seed 0)."""
    from seva_plugin.pipeline.images import load_rgb
    from seva_plugin.pipeline.records import LoadedRecord, PromptRecord
    from seva_plugin.pipeline.views import record_seed

    return LoadedRecord(PromptRecord(record_id, prompt, images), [load_rgb(p) for p in images], record_seed(0, record_id))


@pytest.mark.slow
def test_seva_plugins_lists_the_installed_backend(installed):
    rows = [line.split() for line in seva(installed, ["plugins"]).splitlines()]
    assert ["backend", "plain_transformers", "plain_transformers"] in rows  # kind, name, the entry point's plugin name
    assert ["backend", "hf", "seva_plugin.plugins.backends.hf"] in rows  # the built-ins are still there


@pytest.mark.slow
def test_seva_strategy_builds_with_the_plugin_and_its_answers_are_the_backends(builds, backend):
    cfg, rows, manifest = builds["seva"]
    assert manifest["config"]["backend"] == BACKEND
    counts = manifest["counts"]
    assert counts["records"] == 10 and counts["kept"] == len(rows) >= 3
    assert set(counts["dropped"]) <= {"identical", "empty"}
    for row in rows:
        assert row["provenance"]["strategy"] == "seva" and row["provenance"]["augment"] == "diffusion_noise"
        assert row["chosen"]["value"] != row["rejected"]["value"]

    # The same answers in this process, through the contract: the clean view and the noised view 1,
    # seeded by the record, so the build's views are rebuilt exactly in another process and batch.
    from seva_plugin.interfaces import GenerationRequest, View
    from seva_plugin.registry import get_registry

    augmenter = get_registry().get("augmenter", "diffusion_noise").build({"step": 800})
    folder = os.path.dirname(cfg["source"]["file"])
    for row in rows[:3]:
        loaded = load(row["id"], row["conversations"][0]["value"], [os.path.join(folder, p) for p in row["images"]])
        assert row["provenance"]["seed"] == loaded.seed
        (clean,), (noised,) = backend.generate([GenerationRequest(loaded), GenerationRequest(loaded, View(1, augmenter))])
        assert (clean.text, noised.text) == (row["chosen"]["value"], row["rejected"]["value"])
        assert clean.finish_reason in ("eos", "length") and clean.logprobs is None


@pytest.mark.slow
def test_csr_strategy_builds_scored_pairs_with_the_plugin(builds):
    _, rows, manifest = builds["csr"]
    assert manifest["config"]["backend"] == BACKEND
    assert manifest["counts"]["records"] == 4 and manifest["counts"]["kept"] == len(rows) >= 1
    for row in rows:
        assert row["provenance"]["strategy"] == "csr" and row["provenance"]["augment"] is None
        assert row["chosen"]["value"] != row["rejected"]["value"]
        scores = row["scores"]
        assert scores["method"] == "csr" and scores["search"]["proposals"] >= 3 and scores["search"]["candidates"] >= 2
        assert scores["search"]["generated_tokens"] <= 5 * scores["search"]["proposals"]  # max_sentence_tokens per proposal
        assert scores["chosen"] != scores["rejected"]


def load_example(path: str):
    """The example's module, loaded from ``path`` (the dataclass looks its module up in sys.modules)."""
    spec = importlib.util.spec_from_file_location(MODULE, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE] = module
    spec.loader.exec_module(module)
    return module


class TestTheExamplePassesTheContract(BackendContract):
    """The conformance kit on the example as docs/plugins.md shows it, in this process."""

    template = "llava"

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls, tiny_llava):
        module = load_example(os.path.join(EXAMPLE, f"{MODULE}.py"))
        cls.backend_class = module.PlainTransformersBackend
        yield tiny_llava
        sys.modules.pop(MODULE, None)

    @classmethod
    def make_backend(cls, model):
        return cls.backend_class(model=model, template=cls.template, max_new_tokens=12)


def test_the_docs_quote_the_example_as_it_is():
    """docs/plugins.md walks through the example in excerpts: each must be a verbatim piece of the file."""
    with open(os.path.join(REPO, "docs", "plugins.md")) as fh:
        excerpts = re.findall(r"```python\n# plain_transformers_backend\.py \(excerpt\)\n(.*?)```", fh.read(), re.S)
    with open(os.path.join(EXAMPLE, f"{MODULE}.py")) as fh:
        source = fh.read()
    assert len(excerpts) >= 4
    for excerpt in excerpts:
        assert excerpt in source, excerpt

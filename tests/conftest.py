"""Shared fixtures (a tiny offline LLaVA and CLIP, prompt files, a build config) and the guard that
every test file is collected. Plain helpers are in ``helpers.py``."""

from __future__ import annotations

import glob
import json
import os
import subprocess

import pytest

from helpers import heavy_program, make_images, uncollected

TESTS = os.path.dirname(os.path.abspath(__file__))

# Tiny models gain nothing from a second thread and lose a lot when the cores are shared:
# one thread here and in every subprocess (llamafactory-cli, seva build) the tests start.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory) -> str:
    from seva_plugin.dev.tiny_models import build_tiny_llava

    return build_tiny_llava(tmp_path_factory.mktemp("models") / "llava", seed=0)


# family -> (builder in seva_plugin.dev.tiny_models, its keyword arguments). head_dim 32 where the builder
# allows it: vLLM's CPU attention needs 32 or more (the newer families' twins have it already).
TWINS = {
    "llava": ("build_tiny_llava", {"head_dim": 32}),
    "llava_next": ("build_tiny_llava_next", {"head_dim": 32}),
    "qwen2_vl": ("build_tiny_qwen2_vl", {"head_dim": 32}),
    "qwen2_5_vl": ("build_tiny_qwen2_5_vl", {}),
    "qwen3_vl": ("build_tiny_qwen3_vl", {}),
    "internvl3": ("build_tiny_internvl3", {}),
    "gemma3": ("build_tiny_gemma3", {}),
}


@pytest.fixture(scope="session")
def twins(tmp_path_factory):
    """``twins(family)``: the family's twin, carrying the real checkpoint's files, built once a session on first use."""
    import seva_plugin.dev.tiny_models as tiny

    built: dict[str, str] = {}

    def get(family: str) -> str:
        if family not in built:
            builder, kwargs = TWINS[family]
            built[family] = getattr(tiny, builder)(tmp_path_factory.mktemp("twins") / family, **kwargs)
        return built[family]

    return get


@pytest.fixture(scope="session")
def feedback_llava(tiny_llava, tmp_path_factory) -> str:
    """The tiny LLaVA whose answers hold several sentences and whose yes/no probes lean "No"
    (``helpers.biased_llava``): RLAIF-V's scores then differ between a prompt's answers."""
    from helpers import biased_llava

    return biased_llava(tiny_llava, str(tmp_path_factory.mktemp("models") / "feedback_llava"))


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> str:
    """The tiny CLIP of CSR's visual score, built once per session."""
    from seva_plugin.dev.tiny_models import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("models") / "clip", seed=0)


@pytest.fixture(scope="session")
def vllm_engines():
    """vLLM engines shared by the whole session, one alive at a time (``helpers.VllmEngines``)."""
    from helpers import VllmEngines

    engines = VllmEngines()
    yield engines
    engines.close()


@pytest.fixture(scope="session")
def shapes_pope(tmp_path_factory) -> dict:
    """POPE question files made from the demo's shapes world (12 held-out images, three settings, images
    named relative to ``image_dir``, as POPE's files name COCO's): ``{"files": {setting: path},
    "image_dir": folder, "objects": the world's objects as a jsonl}``."""
    from seva_plugin.commands.demo import pope
    from seva_plugin.commands.demo.world import make_world
    from seva_plugin.eval.probes import read_objects, write_pope_files
    from seva_plugin.eval.sampling import AnnotatedImage, sample_probes

    root = tmp_path_factory.mktemp("shapes_pope")
    world = make_world(str(root / "world"), seed=0, n_sft=0, n_unlabeled=0, n_heldout=12)
    objects = pope.write_objects(world.heldout, str(root / "objects.jsonl"))
    images = [AnnotatedImage(os.path.basename(im.path), im.path, im.objects) for im in read_objects(objects, None)[0]]
    probes = sample_probes(images, ["random", "popular", "adversarial"], 3, "Is there a {object} in the image?", seed=0)
    files = write_pope_files(probes, str(root / "pope"), prefix="shapes")
    return {"files": files, "image_dir": str(root / "world" / "heldout"), "objects": objects}


@pytest.fixture
def asked_elsewhere():
    """A strategy from outside the package (``helpers.asked_elsewhere_strategy``), registered for the test."""
    from helpers import asked_elsewhere_strategy, registered_strategy

    with registered_strategy(asked_elsewhere_strategy()):
        yield {"name": "test_asked_elsewhere"}


@pytest.fixture
def prompts(tmp_path) -> str:
    """A JSONL of 10 prompts with images beside it."""
    names = make_images(tmp_path / "images", 10)
    path = tmp_path / "prompts.jsonl"
    with open(path, "w") as fh:
        for i, name in enumerate(names):
            fh.write(json.dumps({"id": f"p{i}", "image": f"images/{name}", "question": "What colour is the square?"}) + "\n")
    return str(path)


@pytest.fixture
def build_config(tiny_llava, prompts, tmp_path) -> dict:
    return {
        "model": tiny_llava,
        "template": "llava",
        "source": {"file": prompts, "format": "jsonl"},
        "augment": {"name": "diffusion_noise", "step": 800},
        "backend": {"name": "hf", "batch_size": 4, "max_new_tokens": 8},
        "output": {"dataset_dir": str(tmp_path / "data"), "name": "seva_test"},
        "seed": 0,
    }


# -- every test file is collected ------------------------------------------------------------
# pytest silently skips folders named build, dist, venv, ... (norecursedirs): a test file there
# guards nothing. When a run covers the whole suite, a test file it did not collect is an error.
_modules: set[str] = set()
_errors: list[str] = []
_counted: list[int] = []


def pytest_collectreport(report):
    if report.failed:
        _errors.append(report.nodeid)  # pytest reports it; the guard judges only a clean collection
    elif report.nodeid.endswith(".py"):
        _modules.add(str(report.fspath))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    _counted.append(len(items))  # before -m / -k deselect any


def _whole_suite(config) -> bool:
    args = [os.path.realpath(a.split("::")[0]) for a in config.args]
    return any(a in (TESTS, os.path.dirname(TESTS)) for a in args)


def pytest_collection_finish(session):
    if _errors or not _whole_suite(session.config):
        return
    on_disk = glob.glob(os.path.join(TESTS, "**", "test_*.py"), recursive=True)
    missing = uncollected(on_disk, _modules)
    if missing:
        names = ", ".join(os.path.relpath(p, TESTS) for p in missing)
        raise pytest.UsageError(f"{len(missing)} test file(s) under tests/ were not collected (a folder pytest skips, such as build/ or dist/?): {names}")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        total = _counted[-1] if _counted else len(session.items)
        reporter.write_line(f"seva: collected {total} tests from all {len(on_disk)} test files under tests/ ({len(session.items)} selected)")


# -- a test that starts llamafactory-cli, seva or Ray is marked slow ------------------------------
# `make test-fast` (-m "not slow") is the inner loop: a test that starts one of these there (in
# itself or in a fixture it sets up first) is an error naming the program.
_running: list[pytest.Item] = []
_popen_init = subprocess.Popen.__init__


def _guarded_popen_init(self, *args, **kwargs):
    program = heavy_program(args[0] if args else kwargs.get("args", ()))
    if program and _running and _running[-1].get_closest_marker("slow") is None:
        raise pytest.fail.Exception(f"{_running[-1].nodeid} starts {program} but is not marked @pytest.mark.slow (make test-fast would run it)")
    _popen_init(self, *args, **kwargs)


subprocess.Popen.__init__ = _guarded_popen_init


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _running.append(item)
    try:
        yield
    finally:
        _running.pop()

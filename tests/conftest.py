"""Shared fixtures: a tiny offline LLaVA, a folder of images and prompt files, a build config."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from PIL import Image

from seva_plugin.commands.host import llamafactory_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout: recipes/, data_templates/, docs/

# Tiny models gain nothing from a second thread and lose a lot when the cores are shared:
# one thread here and in every subprocess (llamafactory-cli, seva build) the tests start.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    import torch

    torch.set_num_threads(1)


COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory) -> str:
    from seva_plugin.dev.tiny_models import build_tiny_llava

    return build_tiny_llava(tmp_path_factory.mktemp("models") / "llava", seed=0)


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> str:
    """The tiny CLIP of CSR's visual score, built once per session."""
    from seva_plugin.dev.tiny_models import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("models") / "clip", seed=0)


def make_images(folder, n: int) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    names = []
    for i in range(n):
        colour = list(COLOURS.values())[i % len(COLOURS)]
        img = Image.new("RGB", (48 + 4 * (i % 3), 40), (250, 250, 250))
        img.paste(colour, (8 + i % 5, 8, 30 + i % 7, 30))
        name = f"img{i:03d}.png"
        img.save(os.path.join(folder, name))
        names.append(name)
    return names


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


def read_jsonl(path) -> list[dict]:
    with open(path) as fh:
        return [json.loads(line) for line in fh]


def run_train(recipe: str, cwd=None, **overrides) -> subprocess.CompletedProcess:
    """The real `llamafactory-cli train RECIPE key=value ...`."""
    args = [f"{k}={v}" for k, v in overrides.items()]
    env = {**os.environ, "LLAMAFACTORY_VERBOSITY": "WARN"}
    recipe = os.path.abspath(recipe)
    return subprocess.run([llamafactory_cli(), "train", recipe, *args], capture_output=True, text=True, env=env, timeout=600, cwd=cwd)


def use_backends(monkeypatch, *backends):
    """Builds in this test find these (scripted, model-free) backends beside the built-ins; returns the registry."""
    from seva_plugin import hookimpl
    from seva_plugin.registry import Registry, make_plugin_manager

    class Plugin:
        @hookimpl
        def register_backends(self, register):
            for backend in backends:
                register(backend)

    pm = make_plugin_manager(entry_points=False)
    pm.register(Plugin(), name="test-backends")
    registry = Registry(pm)
    monkeypatch.setattr("seva_plugin.build.pipeline.get_registry", lambda: registry)
    return registry

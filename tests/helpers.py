"""Helpers the tests import (``from helpers import ...``); the fixtures live in ``conftest.py``."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess

from PIL import Image

from seva_plugin.commands.host import llamafactory_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout: recipes/, data_templates/, docs/

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}


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
    monkeypatch.setattr("seva_plugin.pipeline.build.get_registry", lambda: registry)
    return registry


def uncollected(test_files, collected) -> list[str]:
    """The test files on disk that a pytest run over the whole suite did not collect."""
    collected = {os.path.realpath(p) for p in collected}
    return sorted(p for p in test_files if os.path.realpath(p) not in collected)


def scripted_backend():
    """A backend class without a model: "red" on the clean view, "blue" on the others (every record a pair)."""
    from seva_plugin.interfaces import Answer, Backend

    class Scripted(Backend):
        name = "scripted"

        def __init__(self, model, template, batch_size: int = 4):
            self.batch_size = batch_size

        def generate(self, requests):
            return [Answer(["red" if r.view.clean else "blue"] * r.n, ["eos"] * r.n) for r in requests]

    return Scripted


def scripted_config(folder, n: int = 4, name: str = "ds") -> dict:
    """A build config for ``scripted_backend`` (a model folder nothing loads, ``n`` prompts with images) in ``folder``."""
    folder = str(folder)
    model = os.path.join(folder, "model")
    os.makedirs(model, exist_ok=True)
    with open(os.path.join(model, "config.json"), "w") as fh:
        fh.write('{"model_type": "llava"}')
    names = make_images(os.path.join(folder, "images"), n)
    prompts = os.path.join(folder, "prompts.jsonl")
    with open(prompts, "w") as fh:
        fh.writelines(json.dumps({"id": f"p{i}", "image": f"images/{m}", "question": "Colour?"}) + "\n" for i, m in enumerate(names))
    return {
        "model": model,
        "template": "llava",
        "source": {"file": prompts},
        "backend": {"name": "scripted"},
        "output": {"dataset_dir": os.path.join(folder, "data"), "name": name},
    }


@contextlib.contextmanager
def read_only(folder):
    """``folder`` seen read-only: a read-only bind mount of it as root (where mounting is allowed), else the
    folder itself with its write permissions removed. Yields the read-only path; pytest skips when neither works."""
    import pytest

    folder = str(folder)
    if os.geteuid() == 0:
        view = folder.rstrip("/") + "-ro"
        os.makedirs(view, exist_ok=True)
        mounted = subprocess.run(["mount", "--bind", folder, view], capture_output=True).returncode == 0
        if mounted and subprocess.run(["mount", "-o", "remount,bind,ro", view], capture_output=True).returncode == 0:
            try:
                yield view
            finally:
                subprocess.run(["umount", view], check=True)
            return
        if mounted:
            subprocess.run(["umount", view])
        pytest.skip("running as root without the right to mount: no read-only folder to test with")
    modes = {}
    for path, _dirs, files in os.walk(folder):
        for p in [path, *(os.path.join(path, n) for n in files)]:
            modes[p] = os.stat(p).st_mode
            os.chmod(p, modes[p] & ~0o222)
    try:
        yield folder
    finally:
        for p, mode in modes.items():
            os.chmod(p, mode)

"""Helpers the tests import (``from helpers import ...``); the fixtures live in ``conftest.py``."""

from __future__ import annotations

import contextlib
import glob
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

    pm = make_plugin_manager(third_party=False)
    pm.register(Plugin(), name="test-backends")
    registry = Registry(pm)
    monkeypatch.setattr("seva_plugin.pipeline.build.get_registry", lambda: registry)
    return registry


def answer(texts: list[str], reason: str = "eos") -> list:
    """A scripted backend's answer: one completion per text (no token ids or log-probs of a real model)."""
    from seva_plugin import Completion

    return [Completion(t, reason, []) for t in texts]


class VllmEngines:
    """The session's vLLM engines, at most one alive (each holds gigabytes): asking for another shuts
    the last one down. A build given one of them keeps it (its ``close()`` does nothing)."""

    def __init__(self):
        self.key, self.engine = None, None

    def get(self, model: str, template: str, **keys):
        from seva_plugin.plugins.backends.vllm import VllmBackend

        class SharedEngine(VllmBackend):
            def close(self):
                pass

            def shutdown(self):
                super().close()

        key = (model, template, tuple(sorted(keys.items())))
        if key != self.key:
            self.close()
            self.key, self.engine = key, SharedEngine(model, template, **keys)
        return self.engine

    def close(self):
        if self.engine is not None:
            self.engine.shutdown()
        self.key, self.engine = None, None


def uncollected(test_files, collected) -> list[str]:
    """The test files on disk that a pytest run over the whole suite did not collect."""
    collected = {os.path.realpath(p) for p in collected}
    return sorted(p for p in test_files if os.path.realpath(p) not in collected)


def scripted_backend():
    """A backend class without a model: "red" on the clean view, "blue" on the others (every record a pair)."""
    from seva_plugin.interfaces import Backend

    class Scripted(Backend):
        name = "scripted"

        def __init__(self, model, template, batch_size: int = 4):
            self.batch_size = batch_size

        def generate(self, requests):
            return [answer(["red" if r.view.clean else "blue"] * r.n) for r in requests]

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


HEAVY_PROGRAMS = {"llamafactory-cli", "seva", "raylet", "gcs_server"}  # a Ray node starts the last two
HEAVY_MODULES = {"llamafactory.cli", "seva_plugin.commands.cli"}


def heavy_program(args) -> str | None:
    """What a subprocess with these ``args`` runs when it is one a test must be marked slow for
    (llamafactory-cli, seva, a Ray node), else None."""
    argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
    argv = [os.fsdecode(a) for a in argv]
    if not argv:
        return None
    first = argv[0].split()[0] if len(argv) == 1 else argv[0]  # a shell string: its program
    if os.path.basename(first) in HEAVY_PROGRAMS:
        return os.path.basename(first)
    module = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-m"), None)
    return module if module in HEAVY_MODULES else None


# -- a strategy from outside the package, written against ``seva_plugin``'s exports alone ---------
def asked_elsewhere_strategy():
    """``AskedElsewhere`` (built on first use, so importing helpers stays light)."""
    from dataclasses import dataclass

    from seva_plugin import CLEAN, GenerationRequest, LoadedRecord, Pair, ScoreRequest, Strategy

    @dataclass
    class AskedElsewhere(Strategy):
        """Asks its own question twice (the second time under a system text that asks for a false
        answer), scores both answers for that question under the clean view, and pairs them with the
        question it chose as the training prompt."""

        name = "test_asked_elsewhere"
        needs_score = True
        question: str = "Describe the colours you see."

        def prompt(self, record: LoadedRecord) -> str:
            return "<image>" * len(record.images) + self.question

        def planned_requests(self, records, augmenter):
            mine = [GenerationRequest(r, prompt=self.prompt(r)) for r in records]
            return mine + [GenerationRequest(r, prompt=self.prompt(r), system="Answer with something false.") for r in records]

        def make_pairs(self, records, backend, augmenter):
            answers = backend.generate(self.planned_requests(records, augmenter))
            n = len(records)
            pairs = []
            for r, (chosen,), (rejected,) in zip(records, answers[:n], answers[n:], strict=True):
                if not (chosen.text.strip() and rejected.text.strip()):
                    continue
                scored = backend.score([ScoreRequest(r, CLEAN, text, prompt=self.prompt(r)) for text in (chosen.text, rejected.text)])
                scores = {"chosen": sum(scored[0].logprobs), "rejected": sum(scored[1].logprobs), "tokens": len(scored[0].token_ids)}
                pairs.append(Pair(r.record, chosen.text, rejected.text, scores, prompt=self.prompt(r)))
            return pairs

    return AskedElsewhere


class registered_strategy:
    """Registers a strategy class on the process's plugin manager for a ``with`` block."""

    def __init__(self, cls):
        from seva_plugin import hookimpl

        class Plugin:
            @hookimpl
            def register_strategies(self, register):
                register(cls)

        self.plugin = Plugin()

    def __enter__(self):
        from seva_plugin.registry import get_plugin_manager, get_registry

        get_plugin_manager().register(self.plugin, name=f"test-strategy-{id(self.plugin)}")
        get_registry.cache_clear()
        return self

    def __exit__(self, *exc):
        from seva_plugin.registry import get_plugin_manager, get_registry

        get_plugin_manager().unregister(self.plugin)
        get_registry.cache_clear()
        return False


# -- a twin for RLAIF-V's feedback ------------------------------------------------------------
# A random twin's next-token distribution is nearly flat and hardly moves with the question, so every
# claim of a prompt's answers gets the same verdict and RLAIF-V's answer scores (minus the rejected
# claims) are all equal: no pairs. This copy adds one constant dimension to the residual stream (set in
# every token and image embedding, written by no layer), through which chosen tokens get a fixed logit
# bonus (answers of several short sentences, a labeler that leans "No"); the rest is the twin's.
FEEDBACK_BONUS = {".": 0.6, "No": 0.6, " No": 0.6}  # logit bonus per unit of the constant dimension (about 7.5 logits per unit)


def biased_llava(src: str, dst: str, bonus: dict[str, float] | None = None) -> str:
    """A copy of the LLaVA twin at ``src`` in ``dst`` whose single-token words in ``bonus`` get a fixed
    logit bonus (default: ``.`` and ``No``); reused when ``dst`` holds one. Returns ``dst``."""
    import shutil

    import torch
    from transformers import AutoTokenizer, LlavaForConditionalGeneration

    if os.path.isfile(os.path.join(dst, "config.json")):
        return dst
    model = LlavaForConditionalGeneration.from_pretrained(src)
    tokenizer = AutoTokenizer.from_pretrained(src)
    language = model.model.language_model
    with torch.no_grad():
        language.embed_tokens.weight[:, 0] = 1.0
        projector = model.model.multi_modal_projector.linear_2
        projector.weight[0, :] = 0.0
        projector.bias[0] = 1.0
        for layer in language.layers:
            layer.self_attn.o_proj.weight[0, :] = 0.0
            layer.mlp.down_proj.weight[0, :] = 0.0
        model.lm_head.weight[:, 0] = 0.0
        for word, value in (FEEDBACK_BONUS if bonus is None else bonus).items():
            (token,) = tokenizer.encode(word, add_special_tokens=False)
            model.lm_head.weight[token, 0] = value
    model.save_pretrained(dst)
    for name in os.listdir(src):
        if not os.path.exists(os.path.join(dst, name)):
            shutil.copy(os.path.join(src, name), dst)
    return dst


def live_descendants(pid: int) -> set[int]:
    """Every live (not zombie) descendant of ``pid``, read from /proc: what a test checks is gone."""
    parents: dict[int, int] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            state, ppid = open(stat).read().rsplit(")", 1)[1].split()[:2]
        except OSError:
            continue
        if state != "Z":
            parents[int(stat.split("/")[2])] = int(ppid)
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (zombies count as gone)."""
    out = set()
    for pid in pids:
        try:
            if open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
                out.add(pid)
        except OSError:
            pass
    return out

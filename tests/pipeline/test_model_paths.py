"""A cached hub id whose hub cannot be reached is read offline by the build that names it, and only
there: the process's own Hugging Face mode is the same before and after."""

from __future__ import annotations

import json
import os

import pytest

from helpers import make_images, use_backends
from seva_plugin.interfaces import Backend, Completion

seen: list[tuple[bool, str | None]] = []  # (huggingface_hub's offline flag, HF_HUB_OFFLINE) at generate


class OfflineProbe(Backend):
    """Answers "red" on the clean view and "blue" on the other, noting the hub mode it runs under."""

    name = "offline_probe"

    def __init__(self, model, template, batch_size: int = 4):
        self.batch_size = batch_size

    def generate(self, requests):
        from huggingface_hub import constants

        seen.append((constants.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE")))
        return [[Completion("red" if r.view.clean else "blue", "eos", [])] * r.n for r in requests]


@pytest.fixture
def cached_unreachable(tmp_path, monkeypatch) -> str:
    """A hub id in a fresh local cache, with a hub that never answers (a name that never resolves, RFC 2606)."""
    import huggingface_hub.constants as hub

    cache = tmp_path / "hub"
    snapshot = cache / "models--someorg--cached" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text('{"model_type": "llava"}')
    (cache / "models--someorg--cached" / "refs").mkdir()
    (cache / "models--someorg--cached" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
    return "someorg/cached"


def test_checking_a_cached_hub_id_without_network_leaves_the_process_online(cached_unreachable):
    from huggingface_hub import constants

    from seva_plugin.pipeline.model_paths import check_model_path

    assert check_model_path(cached_unreachable, "model") is True  # to be read offline
    assert constants.HF_HUB_OFFLINE is False and "HF_HUB_OFFLINE" not in os.environ


def test_the_build_of_a_cached_hub_id_runs_offline_and_restores_the_mode(cached_unreachable, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from seva_plugin.pipeline.build import build

    use_backends(monkeypatch, OfflineProbe)
    names = make_images(tmp_path / "images", 2)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "image": f"images/{n}", "question": "Colour?"}) + "\n" for i, n in enumerate(names)))
    seen.clear()
    result = build(
        {
            "model": cached_unreachable,
            "template": "llava",
            "source": {"file": str(prompts)},
            "backend": {"name": "offline_probe"},
            "output": {"dataset_dir": str(tmp_path / "data"), "name": "ds"},
        },
        progress=False,
    )
    assert result.kept == 2
    assert seen and set(seen) == {(True, "1")}  # what loads the model reads the cache, here and in processes it starts
    assert constants.HF_HUB_OFFLINE is False and "HF_HUB_OFFLINE" not in os.environ


def test_hub_offline_restores_a_value_set_before(monkeypatch):
    from huggingface_hub import constants

    from seva_plugin.pipeline.model_paths import hub_offline

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with hub_offline():
        assert constants.HF_HUB_OFFLINE is True and os.environ["HF_HUB_OFFLINE"] == "1"
    assert constants.HF_HUB_OFFLINE is False and os.environ["HF_HUB_OFFLINE"] == "0"
    with hub_offline(False):
        assert constants.HF_HUB_OFFLINE is False

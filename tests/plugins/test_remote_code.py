"""A model folder's own Python (``auto_map``) never runs unless asked (issue 15, item 6).

``backend_hf`` used to force ``trust_remote_code: True`` for every model, and the benchmark did the
same: a downloaded model folder could run any code it ships. Now it is off unless the config (or
the benchmark's ``--trust-remote-code``) asks, as in LLaMA-Factory.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from seva_plugin.pipeline.build import build
from seva_plugin.plugins.backends.hf import HfBackend


@pytest.fixture
def remote_code_model(tiny_llava, tmp_path, monkeypatch):
    """The tiny LLaVA plus ``auto_map`` code that leaves a marker file when it is imported."""
    from transformers import LlavaConfig

    # LLaMA-Factory's loader registers the config class it loaded for its auto class when config.json has an
    # auto_map (register_autoclass): LlavaConfig would then try to save custom code in every later test of the session
    monkeypatch.setattr(LlavaConfig, "_auto_class", LlavaConfig._auto_class)
    folder = tmp_path / "remote_code_llava"
    shutil.copytree(tiny_llava, folder)
    marker = tmp_path / "the_model_code_ran"
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "evil.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('the model folder ran its own code')\n"
        "from transformers import LlavaConfig\n\n\n"
        "class EvilConfig(LlavaConfig):\n"
        "    pass\n"
    )
    return str(folder), marker


def test_a_build_never_runs_a_model_folders_code_unless_asked(remote_code_model, build_config):
    model, marker = remote_code_model
    result = build({**build_config, "model": model, "limit": 2}, progress=False)
    assert result.kept + sum(result.dropped.values()) == 2  # the model loaded and generated
    assert not marker.exists()


def test_trust_remote_code_is_an_opt_in_that_runs_it(remote_code_model):
    """The positive control: the folder's code does run when asked, so the test above means something."""
    model, marker = remote_code_model
    HfBackend(model=model, template="llava").renderer  # noqa: B018 - loads tokenizer, processor and config
    assert not marker.exists()
    HfBackend(model=model, template="llava", trust_remote_code=True).renderer  # noqa: B018
    assert marker.exists()


def test_the_benchmark_does_not_trust_remote_code_unless_asked(monkeypatch):
    from benchmarks import bench, common, methods

    seen = []

    class FakeChatModel:
        def __init__(self, args):
            seen.append(args["trust_remote_code"])
            raise RuntimeError("enough")

    monkeypatch.setattr("llamafactory.chat.ChatModel", FakeChatModel)
    for argv, expected in (([], False), (["--trust-remote-code"], True)):
        args = bench.parse_args(argv)
        monkeypatch.setattr(common, "TRUST_REMOTE_CODE", args.trust_remote_code)
        with pytest.raises(RuntimeError, match="enough"):
            methods.run_chatmodel("m", "llava", [], 4)
        config = common.build_config("m", "llava", "p.jsonl", "out", "n", 4, 8, 500)
        assert config["backend"].get("trust_remote_code", False) is expected
    assert seen == [False, True]
    assert os.environ.get("TRUST_REMOTE_CODE") is None

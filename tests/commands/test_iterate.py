"""``seva iterate``: two real rounds of build -> ``llamafactory-cli train`` -> ``llamafactory-cli export``
on CPU with a tiny LLaVA, killed once and resumed; round 2 generates with round 1's merged model."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from helpers import make_images, read_jsonl
from seva_plugin.commands import iterate as iterate_mod
from seva_plugin.commands.iterate import Iteration, iterate
from seva_plugin.commands.iterate_inputs import split_overrides
from seva_plugin.errors import ConfigError

pytest.importorskip("llamafactory")

from helpers import REPO  # noqa: E402

RECIPE = os.path.join(REPO, "recipes", "tiny_dpo_cpu.yaml")


@pytest.fixture
def build_yaml(tiny_llava, tiny_clip, tmp_path) -> str:
    names = make_images(tmp_path / "images", 3)
    prompts = tmp_path / "prompts.jsonl"
    with open(prompts, "w") as fh:
        for i, name in enumerate(names):
            fh.write(json.dumps({"id": f"p{i}", "image": f"images/{name}", "question": "Describe the image."}) + "\n")
    config = {
        "model": tiny_llava,
        "template": "llava",
        "source": {"file": str(prompts)},
        "strategy": {
            "name": "csr",
            "clip_model": tiny_clip,
            "num_proposals": 3,
            "max_sentence_tokens": 5,
            "max_response_chars": 30,
        },
        "backend": {"name": "hf", "batch_size": 4},
        "output": {"dataset_dir": str(tmp_path / "ignored"), "name": "csr_iter"},
    }
    path = tmp_path / "build.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_split_overrides():
    assert split_overrides(["seed=1", "train.learning_rate=1e-7", "export.export_size=2", "strategy.mode=repo"]) == (
        ["seed=1", "strategy.mode=repo"],
        ["learning_rate=1e-7"],
        ["export_size=2"],
    )


@pytest.fixture
def eval_yaml(shapes_pope, tmp_path) -> str:
    """POPE-style probes for --eval: the shapes world's question files (model and template come from the iteration)."""
    config = {
        "probes": {"format": "pope", "file": shapes_pope["files"], "image_dir": shapes_pope["image_dir"]},
        "backend": {"name": "hf", "batch_size": 6},
        "max_new_tokens": 4,
        "bootstrap": 50,
        "output": {"dir": "ignored"},
    }
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


@pytest.mark.slow
def test_two_rounds_end_to_end_killed_and_resumed(build_yaml, eval_yaml, tiny_llava, tmp_path, monkeypatch):
    """With --eval: round 0's model and each round's trained model answer the probes, once each."""
    from seva_plugin.eval.runner import Evaluation

    work = tmp_path / "work"
    calls, evaluated = [], []
    real_run, real_eval = Iteration._run, Evaluation.run
    monkeypatch.setattr(Evaluation, "run", lambda self, progress=True: evaluated.append(self.config.model) or real_eval(self, progress))

    def run(self, cmd, log_path):
        calls.append(cmd[1])
        if cmd[1] == "export" and "r1" in log_path and not os.environ.get("SEVA_TEST_RESUMED"):
            raise KeyboardInterrupt  # killed during round 2's merge
        return real_run(self, cmd, log_path)

    monkeypatch.setattr(Iteration, "_run", run)
    with pytest.raises(KeyboardInterrupt):
        iterate(build_yaml, RECIPE, rounds=2, work_dir=str(work), progress=False, eval_yaml=eval_yaml)
    assert calls == ["train", "export", "train", "export"]
    state = json.loads((work / "iterate_state.json").read_text())
    assert state["rounds"][1]["steps_done"] == ["build", "train"]
    assert evaluated == [os.path.abspath(tiny_llava), str(work / "r0" / "merged")] and [e["index"] for e in state["evals"]] == [0, 1]
    assert state["current"] == {"round": 1, "step": "merge"}
    r0_adapter = work / "r0" / "adapter" / "adapter_model.safetensors"
    r1_data = work / "data" / "csr_iter_r1.jsonl"
    stamps = (r0_adapter.stat().st_mtime_ns, r1_data.stat().st_mtime_ns)

    # rerun the same command: only round 2's merge is left
    monkeypatch.setenv("SEVA_TEST_RESUMED", "1")
    calls.clear()
    evaluated.clear()
    state = iterate(build_yaml, RECIPE, rounds=2, work_dir=str(work), progress=False, eval_yaml=eval_yaml)
    assert calls == ["export"]
    assert evaluated == [str(work / "r1" / "merged")]  # the finished evaluations are not asked again
    table = (work / "eval_rounds.md").read_text()
    for e in state["evals"]:
        report = json.loads(open(e["report"]).read())
        assert report["model"] == e["model"] and report["template"] == "llava"
        for setting, f in report["settings"].items():
            assert e["settings"][setting] == {k: f[k] for k in ("n", "accuracy", "f1", "yes_ratio")}
            label = "base (round 0's model)" if e["index"] == 0 else f"after round {e['index']}"
            assert f"| {label} | {setting} | {f['n']} | {100 * f['accuracy']:.1f} | {100 * f['f1']:.1f} | {100 * f['yes_ratio']:.1f} |" in table
    assert (work / "eval_rounds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (r0_adapter.stat().st_mtime_ns, r1_data.stat().st_mtime_ns) == stamps

    r0, r1 = state["rounds"]
    # two adapters were trained, and both merged
    for rnd in (r0, r1):
        assert os.path.isfile(os.path.join(rnd["adapter"], "adapter_config.json"))
        assert os.path.isfile(os.path.join(rnd["adapter"], "adapter_model.safetensors"))
        assert os.path.isfile(os.path.join(rnd["output_model"], "config.json"))
        assert rnd["steps_done"] == ["build", "train", "merge"]
    assert state["final_model"] == r1["output_model"] == str(work / "r1" / "merged")
    # round 1 generated with the base model; round 2 with round 1's merged model, which is also
    # the model round 2 trained on (so its DPO reference, the LoRA base with the adapter disabled)
    m0 = json.loads((work / "data" / "csr_iter_r0.manifest.json").read_text())
    m1 = json.loads((work / "data" / "csr_iter_r1.manifest.json").read_text())
    assert m0["config"]["model"] == os.path.abspath(tiny_llava)
    assert m1["config"]["model"] == r0["output_model"] == str(work / "r0" / "merged")
    adapter_cfg = json.loads(open(os.path.join(r1["adapter"], "adapter_config.json")).read())
    assert adapter_cfg["base_model_name_or_path"] == r0["output_model"]
    assert "model_name_or_path=" + r0["output_model"] in open(work / "r1" / "train.log").readline()
    # the merged model differs from its base (the adapter was really merged)
    from safetensors.torch import load_file

    base, merged = load_file(os.path.join(tiny_llava, "model.safetensors")), load_file(os.path.join(r0["output_model"], "model.safetensors"))
    assert any(not (base[k] == merged[k]).all() for k in base if k in merged and "language_model" in k)
    # both rounds wrote scored pairs that LLaMA-Factory trained on
    for name in ("csr_iter_r0", "csr_iter_r1"):
        rows = read_jsonl(work / "data" / f"{name}.jsonl")
        assert rows and all(r["scores"]["method"] == "csr" for r in rows)
    info = json.loads((work / "data" / "dataset_info.json").read_text())
    assert {"csr_iter_r0", "csr_iter_r1"} <= set(info)


def test_a_different_config_in_the_same_work_dir_is_refused(build_yaml, tmp_path):
    work = tmp_path / "work"
    Iteration(build_yaml, RECIPE, 1, str(work))._save()
    with pytest.raises(ConfigError, match="different build config"):
        Iteration(build_yaml, RECIPE, 1, str(work), overrides=["seed=7"])


@pytest.mark.slow
def test_failed_training_names_its_log_and_is_retried(build_yaml, tmp_path, monkeypatch):
    fake_cli = tmp_path / "llamafactory-cli"
    fake_cli.write_text('#!/bin/sh\necho "ValueError: Some keys are not used by the HfArgumentParser"\nexit 1\n')
    fake_cli.chmod(0o755)
    monkeypatch.setattr(iterate_mod, "llamafactory_cli", lambda: str(fake_cli))
    monkeypatch.setattr(iterate_mod.Iteration, "_build", lambda self, info, progress: None)
    work = tmp_path / "work"
    with pytest.raises(iterate_mod.IterateError, match="(?s)train failed \\(exit 1\\).*train.log.*HfArgumentParser"):
        iterate(
            build_yaml, RECIPE, rounds=1, work_dir=str(work), overrides=["train.seed=3"], progress=False
        )  # an unknown key: the recipe check (test_first_hour.py)
    state = json.loads((work / "iterate_state.json").read_text())
    assert state["rounds"][0]["steps_done"] == ["build"] and state["current"] == {"round": 0, "step": "train"}
    assert "seed=3" in (work / "r0" / "train.log").read_text()


@pytest.mark.slow
def test_seva_strategy_with_full_fine_tuning_needs_no_merge(build_yaml, tiny_llava, tmp_path, monkeypatch):
    """The other strategy, and a recipe without an adapter: the trained output_dir is the next model."""
    work = tmp_path / "work"
    calls = []
    real_run = Iteration._run
    monkeypatch.setattr(Iteration, "_run", lambda self, cmd, log: calls.append(cmd[1]) or real_run(self, cmd, log))
    state = iterate(
        build_yaml,
        RECIPE,
        rounds=1,
        work_dir=str(work),
        progress=False,
        overrides=[
            "strategy=seva",
            "augment=diffusion_noise",
            "augment.step=800",
            "backend.max_new_tokens=6",
            "train.finetuning_type=full",
            "train.learning_rate=1e-5",
        ],
    )
    assert calls == ["train"]
    (r0,) = state["rounds"]
    assert r0["steps_done"] == ["build", "train", "merge"] and r0["output_model"] == r0["adapter"]
    assert os.path.isfile(os.path.join(r0["output_model"], "model.safetensors"))
    assert not os.path.exists(work / "r0" / "merged")
    rows = read_jsonl(work / "data" / "csr_iter_r0.jsonl")
    assert rows and all(r["provenance"]["strategy"] == "seva" for r in rows)

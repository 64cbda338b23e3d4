"""``seva eval`` as users run it: the command on Ray workers against the same config in one process,
and the same probes on ``hf`` and ``vllm`` (float32): the same predictions."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from seva_plugin.commands.eval import evaluate


def eval_config(model: str, shapes_pope: dict, out, backend: dict, **keys) -> dict:
    return {
        "model": model,
        "template": "llava",
        "probes": {"format": "pope", "file": shapes_pope["files"], "image_dir": shapes_pope["image_dir"]},
        "backend": backend,
        "max_new_tokens": 6,
        "bootstrap": 100,
        "output": {"dir": str(out)},
        **keys,
    }


@pytest.mark.slow
def test_the_command_on_two_ray_workers_writes_what_one_process_writes(tiny_llava, shapes_pope, tmp_path):
    pytest.importorskip("ray")
    evaluate(eval_config(tiny_llava, shapes_pope, tmp_path / "local", {"name": "hf", "batch_size": 3}), progress=False, say=lambda t: None)
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(eval_config(tiny_llava, shapes_pope, tmp_path / "ray", {"name": "hf", "batch_size": 3}), sort_keys=False))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH", "")) if p)}
    cmd = [sys.executable, "-m", "seva_plugin.commands.cli", "eval", str(path), "ray.num_workers=2", "--no-progress"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("| setting | n | accuracy | precision | recall | F1 | yes-ratio |")
    assert [line.split("|")[1].strip() for line in run.stdout.splitlines()[2:5]] == list(shapes_pope["files"])
    for name in ("report.json", "predictions.jsonl"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    workers = json.loads((tmp_path / "ray" / "run.json").read_text())["workers"]
    assert workers["ray"] and workers["num_workers"] == 2 and sum(w["records"] for w in workers["workers"]) == 12  # 12 images


@pytest.mark.slow
def test_hf_and_vllm_float32_give_the_same_predictions(shapes_pope, tmp_path_factory, tmp_path, vllm_engines):
    from seva_plugin.dev.tiny_models import build_tiny_llava
    from seva_plugin.eval.config import load_eval_config
    from seva_plugin.eval.runner import Evaluation

    model = os.path.join(tmp_path_factory.getbasetemp(), "vllm_twins", "llava")  # tests/plugins/backends/test_vllm.py's twin
    if not os.path.isfile(os.path.join(model, "config.json")):
        build_tiny_llava(model, seed=0, head_dim=32)  # vLLM's CPU attention needs head_dim 32
    settings = {"batch_size": 4, "max_new_tokens": 12, "max_model_len": 512, "enforce_eager": True}  # test_vllm's engine, shared
    engine = vllm_engines.get(model, "llava", **settings)
    assert engine.describe()["dtype"] == "float32"
    for scoring in ("generate", "logprob"):
        hf = evaluate(eval_config(model, shapes_pope, tmp_path / f"hf_{scoring}", {"name": "hf", "batch_size": 4}, scoring=scoring), progress=False)
        vl = Evaluation(load_eval_config(eval_config(model, shapes_pope, tmp_path / f"vllm_{scoring}", {"name": "vllm", **settings}, scoring=scoring)))
        vl.work.backend = engine  # the same settings, started once
        vl_report = vl.run(progress=False).report
        assert (hf["engine"]["dtype"], vl_report["engine"]["dtype"]) == ("float32", "float32")
        hf_rows, vl_rows = ([json.loads(line) for line in open(tmp_path / f"{b}_{scoring}" / "predictions.jsonl")] for b in ("hf", "vllm"))
        if scoring == "generate":
            assert (tmp_path / "vllm_generate" / "predictions.jsonl").read_bytes() == (tmp_path / "hf_generate" / "predictions.jsonl").read_bytes()
            assert any(r["answer"] for r in hf_rows)
        else:  # log-probabilities agree to float32 rounding, the predictions exactly
            assert [r["prediction"] for r in vl_rows] == [r["prediction"] for r in hf_rows]
            assert all(abs(a["logprob_yes"] - b["logprob_yes"]) < 1e-4 for a, b in zip(vl_rows, hf_rows, strict=True))
        assert vl_report["settings"] == hf["settings"]

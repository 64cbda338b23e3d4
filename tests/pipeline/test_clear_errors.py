"""A one-line message, never a traceback (issue 26, item 14): odd values in a build config, the
``ray`` block and dataset names are refused before anything runs, naming the value."""

from __future__ import annotations

import re

import pytest

from seva_plugin.errors import ConfigError
from seva_plugin.pipeline.config import load_config

BASE = {"model": "m", "template": "llava", "source": {"file": "x.jsonl"}, "output": {"name": "d"}}


@pytest.mark.parametrize(("char", "code"), [("\u202e", "U+202E"), ("\u2028", "U+2028"), ("\u0085", "U+0085"), ("\u200f", "U+200F"), ("\x1b", "U+001B")])
def test_output_name_refuses_control_and_bidirectional_characters(char, code):
    """A right-to-left override (U+202E) shows a name backwards from that point; a line separator splits a log line."""
    with pytest.raises(ConfigError, match=f"output.name .* is not a safe file name: it holds .*{re.escape(code)}"):
        load_config({**BASE, "output": {"name": f"seva{char}x"}})


def test_a_control_character_yaml_cannot_read_is_a_message():
    with pytest.raises(ConfigError, match=r"override 'output.name=seva\\x1bx' is not valid YAML: unacceptable character #x001b"):
        load_config(BASE, ["output.name=seva\x1bx"])


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ("{CPU: .nan}", r"ray.resources_per_worker.CPU must be a finite number, got nan"),
        ("{CPU: .inf}", r"ray.resources_per_worker.CPU must be a finite number, got inf"),
        ("{CPU: 1e-9}", r"ray.resources_per_worker.CPU must be a number, got '1e-9'"),  # YAML 1.1 reads it as text
        ("{CPU: 0.000000001}", r"ray.resources_per_worker.CPU must be a whole number of Ray's smallest share, 0.0001, got 1e-09"),
        ("{GPU: 0.33333}", r"ray.resources_per_worker.GPU must be a whole number of Ray's smallest share, 0.0001, got 0.33333"),
        ("{CPU: -1}", r"ray.resources_per_worker.CPU must be a number of at least 0, got -1"),
    ],
)
def test_ray_resources_are_finite_numbers_ray_can_hold(resources, message):
    """NaN passed the "at least 0" check (every comparison with NaN is false) and crashed Ray's scheduler; 1e-9 crashed it too."""
    with pytest.raises(ConfigError, match=message):
        load_config(BASE, [f"ray.resources_per_worker={resources}"])
    assert load_config(BASE, ["ray.resources_per_worker={GPU: 0.25, CPU: 1.5}"]).ray["resources_per_worker"] == {"GPU": 0.25, "CPU": 1.5}


def test_a_deep_override_key_is_refused_not_a_recursion_error():
    """`backend.engine_kwargs.a.a.a...=1` (thousands of levels) ended in a RecursionError when the config was fingerprinted."""
    from seva_plugin.pipeline.config import fingerprint

    deep = "backend.engine_kwargs." + ".".join(["a"] * 5000) + "=1"
    with pytest.raises(ConfigError, match=r"override 'backend.engine_kwargs.a.a.*' is nested 5002 levels deep; a config has at most 32"):
        fingerprint(load_config(BASE, [deep]).to_dict())
    with pytest.raises(ConfigError, match="nested 40 levels deep"):
        load_config({**BASE, "backend": {"name": "vllm", "engine_kwargs": nested(38)}})


def nested(levels: int) -> dict:
    value: dict = {"x": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("seed", "message"),
    [
        ("9" * 5000, r"override 'seed=9999.*' is not valid YAML: a number of 5,000 digits"),
        (str(2**64), r"seed must be at most 9223372036854775807, got 18446744073709551616"),
    ],
)
def test_a_huge_seed_is_a_message(seed, message):
    """A 5000-digit seed crashed YAML's int() (Python refuses to read more than 4300 digits)."""
    with pytest.raises(ConfigError, match=message):
        load_config(BASE, [f"seed={seed}"])


def test_a_nul_in_a_path_is_a_message(tmp_path):
    """A NUL in dataset_dir reached os.makedirs: ValueError: embedded null byte."""
    with pytest.raises(ConfigError, match=r"output.dataset_dir holds a NUL character"):
        load_config({**BASE, "output": {"name": "d", "dataset_dir": f"{tmp_path}/a\0b"}})
    with pytest.raises(ConfigError, match=r"model holds a NUL character"):
        load_config({**BASE, "model": "m\0"})

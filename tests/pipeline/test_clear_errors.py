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

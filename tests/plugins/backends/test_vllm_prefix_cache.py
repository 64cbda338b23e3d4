"""Backend ``vllm`` starts its engine with prefix caching on: CSR's proposals of one path share the prompt,
the image features and the answer prefix, whose KV blocks vLLM then computes once. No engine is started
here: ``llm_kwargs`` are the engine's arguments (``docs/performance.md`` has the hits measured on CPU)."""

from __future__ import annotations

import importlib.util

import pytest

from seva_plugin.plugins.backends.vllm_engine import llm_kwargs

pytestmark = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed")


def test_prefix_caching_is_on_and_engine_kwargs_can_turn_it_off(tiny_llava):
    from seva_plugin.plugins.backends.vllm import VllmBackend

    assert llm_kwargs(VllmBackend(tiny_llava, "llava"))["enable_prefix_caching"] is True
    off = VllmBackend(tiny_llava, "llava", engine_kwargs={"enable_prefix_caching": False})
    assert llm_kwargs(off)["enable_prefix_caching"] is False

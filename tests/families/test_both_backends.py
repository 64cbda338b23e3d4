"""Every family the recipes cover builds SeVa data on both backends from its twin, which carries what the
real checkpoint ships (generation_config.json, chat template, processor settings, bfloat16 or float16 weights;
seva_plugin/dev/tiny_models/shipped.py): hf always, vllm where it serves the family, and the two give the
same pairs (greedy, float32 on CPU whatever the checkpoint's dtype, on the twin)."""

from __future__ import annotations

import json
import os

import pytest

from helpers import make_images
from seva_plugin.errors import NothingKept
from seva_plugin.pipeline.build import build

# family -> (model_type, template, keys the build shares with training)
FAMILIES = {
    "llava": ("llava", "llava", {}),
    "llava_next": ("llava_next", "llava_next", {}),
    "qwen2_vl": ("qwen2_vl", "qwen2_vl", {"image_max_pixels": 3136}),
    "qwen2_5_vl": ("qwen2_5_vl", "qwen2_vl", {"image_max_pixels": 3136}),
    "qwen3_vl": ("qwen3_vl", "qwen3_vl_nothink", {"image_max_pixels": 4096}),
    "internvl3": ("internvl", "intern_vl", {"crop_to_patches": True}),
    "gemma3": ("gemma3", "gemma3", {}),
}


def _vllm_serves(model_type: str) -> bool:
    from seva_plugin.plugins.backends.vllm_inputs import EMBEDDING_FORMS

    return model_type in EMBEDDING_FORMS


def _rows(model: str, family: str, prompts: str, out, backend: dict) -> list[tuple]:
    """The build's pairs and drops, in order, from its journal (a build where every pair is dropped is still a comparison)."""
    _, template, shared = FAMILIES[family]
    config = {
        "model": model,
        "template": template,
        "source": {"file": prompts},
        "augment": {"name": "diffusion_noise", "step": 500},
        "backend": {**backend, "batch_size": 4, "max_new_tokens": 8, **shared},
        "output": {"dataset_dir": str(out), "name": "pairs"},
    }
    try:
        build(config, progress=False)
    except NothingKept:
        pass
    journal = os.path.join(out, ".seva", "pairs.journal.jsonl")
    with open(journal) as fh:
        return [(e["id"], e.get("chosen"), e.get("rejected")) for e in map(json.loads, fh) if e.get("kind") in ("pair", "drop")]


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_builds_the_same_pairs_on_both_backends(family, twins, tmp_path):
    model_type = FAMILIES[family][0]
    names = make_images(tmp_path / "images", 4)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": f"p{i}", "image": f"images/{n}", "question": "What colour is the square?"}) + "\n" for i, n in enumerate(names))
    )
    hf = _rows(twins(family), family, str(prompts), tmp_path / "hf", {"name": "hf"})
    assert len(hf) == 4
    if not _vllm_serves(model_type):
        pytest.skip(f"backend vllm does not serve {family} (docs/recipes.md says why); built on hf only")
    pytest.importorskip("vllm")
    vllm = _rows(twins(family), family, str(prompts), tmp_path / "vllm", {"name": "vllm", "max_model_len": 1024})
    assert len(vllm) == 4
    assert vllm == hf


# (family, its real checkpoint's dtype, backend.dtype): float32 is CPU's auto, bfloat16 a GPU's
DTYPES = [("qwen2_5_vl", "bfloat16", "float32"), ("gemma3", "bfloat16", "float32"), ("llava", "float16", "bfloat16")]


@pytest.mark.parametrize(("family", "saved", "dtype"), DTYPES)
def test_hf_backend_loads_in_its_dtype_whatever_the_checkpoint_says(family, saved, dtype, twins):
    """backend.dtype decides, not config.json: LLaMA-Factory 0.9.5's load_model loads with torch_dtype="auto" (the
    checkpoint's dtype) and ignores infer_dtype. The model equals transformers' own load in that dtype, buffers
    included: the rotary frequencies stay float32 under bfloat16, Gemma 3's embed_scale is not bfloat16-rounded."""
    import torch
    from transformers import AutoModelForImageTextToText

    from seva_plugin.plugins.backends.hf import HfBackend

    folder = twins(family)
    template = FAMILIES[family][1]
    with open(os.path.join(folder, "config.json")) as fh:
        assert json.load(fh)["dtype"] == saved
    mine = HfBackend(model=folder, template=template, dtype=dtype, device="cpu").hf_model
    theirs = AutoModelForImageTextToText.from_pretrained(folder, dtype=getattr(torch, dtype))
    state = {**dict(mine.named_parameters()), **dict(mine.named_buffers())}
    expected = {**dict(theirs.named_parameters()), **dict(theirs.named_buffers())}
    assert state.keys() == expected.keys()
    assert [name for name, tensor in expected.items() if tensor.dtype != state[name].dtype or not torch.equal(tensor, state[name])] == []
    assert {p.dtype for p in mine.parameters()} == {getattr(torch, dtype)}

"""CSR builds give the same pairs as the golden builds made before CSR's speed work (issue 25).

``tests/golden/csr_*.jsonl`` were written by the code at commit b53fbd7 (before the prompt's KV
cache, the cached image features and the batched CLIP work) with exactly the configs below:
a tiny LLaVA twin (its plain float32 files) and a tiny CLIP, the ``hf`` backend. Texts, ids, the search's counters and the
candidate count must be equal byte for byte; the scores are float32 sums that another batch
make-up or a cached prompt may change in the last digits, so they are compared to 1e-4.
"""

from __future__ import annotations

import json
import math
import os

import pytest

from helpers import make_images, read_jsonl

pytest.importorskip("torch")

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "golden")
QUESTIONS = ["Describe the image.", "What colour is the square?", "Where is the square?"]
SEARCH = {"num_proposals": 3, "max_sentence_tokens": 6, "max_response_chars": 48}
CASES = {  # name: (strategy keys, backend keys)
    # paper mode; the random twin rarely writes '.', so most sentences run to max_sentence_tokens
    "csr_paper": ({"mode": "paper", **SEARCH}, {"batch_size": 3}),
    # repo mode, a frequent sentence end (sentences of every length, so paths of different lengths share
    # a call), and at most 4 answers per backend call (a step's requests split over several calls)
    "csr_repo": ({"mode": "repo", "sentence_end": "e", "max_rows": 4, **SEARCH}, {"batch_size": 4}),
}


def golden_config(model: str, clip: str, prompts: str, out: str, case: str) -> dict:
    strategy, backend = CASES[case]
    return {
        "model": model,
        "template": "llava",
        "source": {"file": prompts, "format": "jsonl"},
        "strategy": {"name": "csr", "clip_model": clip, **strategy},
        "backend": {"name": "hf", **backend},
        "filters": [],
        "output": {"dataset_dir": out, "name": case},
        "seed": 3,
    }


def write_inputs(root) -> str:
    """Six prompts with their images under ``root``; returns the prompt file."""
    names = make_images(os.path.join(root, "images"), 6)
    prompts = os.path.join(root, "prompts.jsonl")
    with open(prompts, "w") as fh:
        for i, name in enumerate(names):
            fh.write(json.dumps({"id": f"p{i}", "image": os.path.join(root, "images", name), "question": QUESTIONS[i % 3]}) + "\n")
    return prompts


def comparable(row: dict) -> dict:
    """A data row without its scores, its images by file name (the golden build ran in another folder)."""
    return {**row, "scores": None, "images": [os.path.basename(p) for p in row["images"]]}


def close(a, b, tol: float) -> bool:
    """Equal structure and strings; numbers within ``tol``."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(close(a[k], b[k], tol) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(close(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=tol, abs_tol=tol)
    return a == b


@pytest.fixture(scope="module")
def plain_llava(tmp_path_factory) -> str:
    """The twin's plain files (float32), which the golden builds were made with; ``tiny_llava`` ships float16."""
    from seva_plugin.dev.tiny_models import build_tiny_llava

    return build_tiny_llava(tmp_path_factory.mktemp("models") / "llava", seed=0, real_files=False)


@pytest.mark.parametrize("case", sorted(CASES))
def test_csr_build_equals_the_golden_build(plain_llava, tiny_clip, tmp_path, case):
    from seva_plugin.pipeline.build import build

    result = build(golden_config(plain_llava, tiny_clip, write_inputs(tmp_path), str(tmp_path / "data"), case), progress=False)
    rows, golden = read_jsonl(result.data_file), read_jsonl(os.path.join(GOLDEN, f"{case}.jsonl"))
    assert len(golden) >= 4 and len(rows) == len(golden)
    assert [comparable(r) for r in rows] == [comparable(g) for g in golden]
    assert [r["scores"]["search"] for r in rows] == [g["scores"]["search"] for g in golden]
    assert all(close(r["scores"], g["scores"], 1e-4) for r, g in zip(rows, golden, strict=True))

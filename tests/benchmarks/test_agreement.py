"""``python -m benchmarks.agreement``: the builds it compares are the shipped build templates with the twin
swapped in, and it counts per record, from the journals, dropped pairs included."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from benchmarks import agreement
from helpers import REPO


@pytest.mark.parametrize("family", list(agreement.FAMILIES))
def test_builds_are_the_shipped_templates_with_the_twin(family, tmp_path):
    with open(os.path.join(REPO, "data_templates", agreement.FAMILIES[family][2])) as fh:
        shipped = yaml.safe_load(fh)
    for backend in ("hf", "vllm"):
        config = agreement.build_config(family, "/twin", "/prompts.jsonl", str(tmp_path), backend, "float32")
        swapped = (config["model"], config["source"], config["backend"]["name"], config["backend"]["dtype"])
        assert swapped == ("/twin", {"file": "/prompts.jsonl"}, backend, "float32")
        same = ("template", "strategy", "augment", "filters", "seed")
        assert {k: config[k] for k in same} == {k: shipped[k] for k in same}
        kept = {k: v for k, v in shipped["backend"].items() if k not in ("name", "dtype")}
        assert {k: config["backend"][k] for k in kept} == kept  # batch_size, max_new_tokens 512, pixel settings
        assert ("max_model_len" in config["backend"]) == (backend == "vllm")


def test_counts_each_record_once_pairs_and_drops_alike(tmp_path):
    def journal(name, entries):
        os.makedirs(tmp_path / name / ".seva", exist_ok=True)
        with open(tmp_path / name / ".seva" / f"{name}.journal.jsonl", "w") as fh:
            fh.writelines(json.dumps(e) + "\n" for e in entries)
        return agreement.answers(str(tmp_path / name), name)

    hf = journal(
        "hf",
        [
            {"kind": "pair", "id": "a", "chosen": "x", "rejected": "y"},
            {"kind": "drop", "id": "b", "reason": "identical", "chosen": "z", "rejected": "z"},
            {"kind": "reject", "id": "c", "reason": "missing_file"},
            {"kind": "pair", "id": "d", "chosen": "p", "rejected": "q"},
        ],
    )
    vllm = journal(
        "vllm",
        [
            {"kind": "pair", "id": "a", "chosen": "x", "rejected": "y2"},
            {"kind": "pair", "id": "b", "chosen": "z", "rejected": "w"},
            {"kind": "pair", "id": "d", "chosen": "p", "rejected": "q"},
        ],
    )
    assert agreement.compare(hf, vllm) == {"records": 3, "answered_by_both": 3, "chosen_equal": 3, "rejected_equal": 1, "pairs_equal": 1}

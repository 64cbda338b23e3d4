"""``seva eval`` in-process on a tiny LLaVA twin with POPE files made from the demo's shapes world: the
table and the report, figures recounted from the predictions, byte-identical reruns, a killed run
resumed, broken images as rejects, and before/after with McNemar."""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest

from seva_plugin.commands.eval import evaluate
from seva_plugin.eval.answers import ProbeWork
from seva_plugin.eval.stats import METRICS, confusion, metrics


def config(tiny_llava, shapes_pope, out, **keys) -> dict:
    return {
        "model": tiny_llava,
        "template": "llava",
        "probes": {"format": "pope", "file": list(shapes_pope["files"].values()), "image_dir": shapes_pope["image_dir"]},
        "backend": {"name": "hf", "batch_size": 4},
        "max_new_tokens": 4,
        "bootstrap": 200,
        "output": {"dir": str(out)},
        **keys,
    }


def read_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def recount(out) -> dict:
    """The report's figures, recounted from its predictions.jsonl alone."""
    rows = read_jsonl(os.path.join(out, "predictions.jsonl"))
    figures = {}
    for setting in dict.fromkeys(r["setting"] for r in rows):
        mine = [r for r in rows if r["setting"] == setting]
        counts = confusion([r["label"] == "yes" for r in mine], [r["prediction"] == "yes" for r in mine])
        figures[setting] = {**metrics(**counts), **counts}
    return figures


def test_pope_files_from_the_shapes_world_give_a_table_and_a_report_that_recount(tiny_llava, shapes_pope, tmp_path):
    printed = []
    report = evaluate(config(tiny_llava, shapes_pope, tmp_path / "a"), progress=False, say=printed.append)
    on_disk = json.loads((tmp_path / "a" / "report.json").read_text())
    assert on_disk == report
    assert list(report["settings"]) == ["random", "popular", "adversarial"]
    for setting, figures in recount(tmp_path / "a").items():
        mine = report["settings"][setting]
        assert {k: mine[k] for k in figures} == figures
        assert figures["n"] == 12 * 6  # 12 images, 3 present and 3 absent objects each
        for m in METRICS:
            lo, hi = mine["ci95"][m]
            assert lo <= mine[m] <= hi
    (table,) = printed
    rows = [line for line in table.splitlines() if line.startswith("| ") and "setting" not in line]
    assert [r.split("|")[1].strip() for r in rows] == ["random", "popular", "adversarial"]
    f = report["settings"]["adversarial"]
    assert rows[2].split("|")[4].strip() == f"{100 * f['precision']:.1f} [{100 * f['ci95']['precision'][0]:.1f}, {100 * f['ci95']['precision'][1]:.1f}]"
    predictions = read_jsonl(tmp_path / "a" / "predictions.jsonl")
    probes = [json.loads(line) for path in shapes_pope["files"].values() for line in open(path)]
    assert [(p["question_id"], p["label"]) for p in predictions] == [(q["question_id"], q["label"]) for q in probes]
    assert set(predictions[0]) == {"question_id", "setting", "image", "question", "label", "answer", "prediction"}
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    assert run["probes_answered"] == len(predictions) == 216 and run["questions_asked"] < 216  # present objects shared by the settings

    # a second run into another folder: the same bytes
    evaluate(config(tiny_llava, shapes_pope, tmp_path / "b"), progress=False, say=printed.append)
    for name in ("report.json", "predictions.jsonl", "rejects.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_logprob_scoring_and_a_killed_run_resumed(tiny_llava, shapes_pope, tmp_path, monkeypatch):
    """P(Yes) against P(No) through the contract's score; killed after its first batch, the rerun asks
    only what is left and writes what an uninterrupted run writes."""
    whole = evaluate(config(tiny_llava, shapes_pope, tmp_path / "whole", scoring="logprob"), progress=False, say=lambda t: None)
    rows = read_jsonl(tmp_path / "whole" / "predictions.jsonl")
    assert all(r["prediction"] == ("yes" if r["logprob_yes"] > r["logprob_no"] else "no") and r["answer"] in ("Yes", "No") for r in rows)
    assert {s: {k: f[k] for k in ("tp", "fp", "tn", "fn")} for s, f in whole["settings"].items()} == {
        s: {k: f[k] for k in ("tp", "fp", "tn", "fn")} for s, f in recount(tmp_path / "whole").items()
    }

    real, asked, killed = ProbeWork.entries, [], []

    def dies_on_the_second_batch(self, batch):
        asked.append([r.id for r in batch])
        if len(asked) == 2 and not killed:
            killed.append(True)
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(ProbeWork, "entries", dies_on_the_second_batch)
    cfg = config(tiny_llava, shapes_pope, tmp_path / "killed", scoring="logprob")
    with pytest.raises(KeyboardInterrupt):
        evaluate(cfg, progress=False, say=lambda t: None)
    assert not (tmp_path / "killed" / "report.json").exists()
    first = asked[0]
    asked.clear()
    evaluate(cfg, progress=False, say=lambda t: None)
    assert not set(first) & {i for batch in asked for i in batch}  # the finished batch is not asked again
    for name in ("report.json", "predictions.jsonl"):
        assert (tmp_path / "killed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


def test_broken_images_are_rejects_with_reasons(tiny_llava, shapes_pope, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rows = [json.loads(line) for line in open(shapes_pope["files"]["random"])][:12]  # two images, six probes each
    for name in {r["image"] for r in rows}:
        os.symlink(os.path.join(shapes_pope["image_dir"], name), images / name)
    (images / "broken.png").write_bytes(b"not a png")
    rows += [{"question_id": 100, "image": "broken.png", "text": "Is there a cat?", "label": "no"}]
    rows += [{"question_id": 101, "image": "missing.png", "text": "Is there a dog?", "label": "yes"}, {"question_id": 102, "label": "no"}]
    probes = tmp_path / "mine_pope_random.json"
    probes.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = evaluate(
        {**config(tiny_llava, shapes_pope, tmp_path / "out"), "probes": {"format": "pope", "file": str(probes), "image_dir": str(images)}},
        progress=False,
        say=lambda t: None,
    )
    assert report["settings"]["random"]["n"] == 12
    assert report["rejected_probes"] == {"bad_probe": 1, "missing_file": 1, "not_an_image": 1}
    rejects = {r["id"]: r for r in read_jsonl(tmp_path / "out" / "rejects.jsonl")}
    assert "image file not found" in rejects["missing.png"]["reason"] and "missing.png" in rejects["missing.png"]["reason"]
    assert "not an image" in rejects["broken.png"]["reason"]
    assert "has no question_id" not in json.dumps(rejects) and "has no image, text" in json.dumps(rejects)


def test_before_and_after_an_adapter_with_mcnemar(tiny_llava, shapes_pope, tmp_path):
    """compare: [base, adapter] runs both, pairs the probes and tests the change; comparing the two
    output folders afterwards gives the same figures without running a model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    adapter = str(tmp_path / "adapter")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        lora = LoraConfig(r=8, lora_alpha=64, target_modules=r"^(?!.*vision_tower).*(?:q_proj|v_proj|down_proj)", init_lora_weights=False)
        get_peft_model(AutoModelForImageTextToText.from_pretrained(tiny_llava), lora).save_pretrained(adapter)
    printed: list[str] = []
    cfg = config(tiny_llava, shapes_pope, tmp_path / "cmp", scoring="logprob", adapter=adapter, compare=["base", "adapter"])
    comp = evaluate(cfg, progress=False, say=printed.append)
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text()) == comp
    base, after = (read_jsonl(tmp_path / "cmp" / run / "predictions.jsonl") for run in ("base", "adapter"))
    assert [r["logprob_yes"] for r in base] != [r["logprob_yes"] for r in after]  # the adapter changed the model
    for setting, s in comp["settings"].items():
        pairs = [(a, b) for a, b in zip(base, after, strict=True) if a["setting"] == setting]
        right = Counter((a["prediction"] == a["label"], b["prediction"] == b["label"]) for a, b in pairs)
        assert (s["fixed"], s["broken"], s["n"]) == (right[False, True], right[True, False], len(pairs))
        assert s["change"]["accuracy"] == pytest.approx((right[False, True] - right[True, False]) / len(pairs))
        assert 0 <= s["mcnemar"]["p"] <= 1
    table = printed[-1]
    assert table.count("| change |") == 3
    for setting, s in comp["settings"].items():  # each setting's verdict fits its counts
        verdict = next(line for line in table.splitlines() if line.startswith(f"{setting}:"))
        if s["fixed"] + s["broken"] == 0:
            assert "no answer changed its prediction" in verdict, verdict
        else:
            assert "not distinguishable from chance" in verdict or "unlikely to be chance" in verdict, verdict

    again = evaluate({**cfg, "compare": [str(tmp_path / "cmp" / "base"), str(tmp_path / "cmp" / "adapter")]}, progress=False, say=lambda t: None)
    assert again["settings"] == comp["settings"]

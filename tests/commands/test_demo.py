"""The demo's report: figures computed from the runs (checked here by recomputing them), not constants."""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest

from seva_plugin.commands.demo import report as rep
from seva_plugin.commands.demo.world import Example


def ex(i, kind, answer):
    return Example(f"q{i}", f"/img/{i}.png", "?", answer, kind)


def test_accuracy_and_changes_by_hand():
    exs = [ex(0, "color", "red"), ex(1, "color", "blue"), ex(2, "shape", "circle"), ex(3, "count", "two")]
    before = ["red", "red", "square", "two"]
    after = ["red", "blue", "circle", "three"]
    acc = rep.accuracy_by_kind(exs, before)
    assert acc == {"color": 0.5, "shape": 0.0, "count": 1.0, "all": 0.5}
    assert rep.accuracy_by_kind(exs, after)["all"] == 0.75
    assert rep.changes(exs, before, after) == {"fixed": 2, "broken": 1}


def test_pair_precision_by_hand():
    truth = {e.id: e for e in [ex(0, "color", "red"), ex(1, "color", "blue"), ex(2, "shape", "circle"), ex(3, "count", "two"), ex(4, "count", "one")]}
    entries = [
        {"kind": "pair", "id": "q0", "chosen": "red", "rejected": "green"},  # useful
        {"kind": "pair", "id": "q1", "chosen": "green", "rejected": "blue"},  # inverted
        {"kind": "pair", "id": "q2", "chosen": "square", "rejected": "triangle"},  # both wrong
        {"kind": "drop", "id": "q3", "reason": "identical", "chosen": "two", "rejected": "two"},
        {"kind": "drop", "id": "q4", "reason": "identical", "chosen": "two", "rejected": "two"},
        {"kind": "reject", "id": "q9", "reason": "missing", "code": "missing_file"},
    ]
    p = rep.pair_precision(entries, truth)
    assert p["kept"]["n"] == 3
    assert p["kept"]["chosen_correct"] == pytest.approx(1 / 3)
    assert p["kept"]["rejected_correct"] == pytest.approx(1 / 3)
    assert p["kept"]["useful"] == p["kept"]["inverted"] == p["kept"]["both_wrong"] == pytest.approx(1 / 3)
    assert p["identical"] == {"n": 2, "chosen_correct": 0.5, "rejected_correct": 0.5, "useful": 0.0, "inverted": 0.0, "both_wrong": 0.5}


def test_sign_test_and_error_overlap():
    assert rep.sign_test(0, 0) == 1.0
    assert rep.sign_test(5, 5) == 1.0
    assert rep.sign_test(10, 0) == pytest.approx(2 / 1024)
    assert rep.sign_test(18, 12) == rep.sign_test(12, 18)
    assert rep.overlap(Counter(a=1, b=1), Counter(a=2, b=2)) == 1.0
    assert rep.overlap(Counter(a=1), Counter(b=1)) == 0.0
    assert rep.overlap(Counter(a=3, b=1), Counter(a=1, b=1)) == pytest.approx(0.75)
    heldout = [ex(0, "shape", "circle"), ex(1, "shape", "circle"), ex(2, "shape", "square")]
    truth = {e.id: e for e in heldout}
    entries = [{"kind": "pair", "id": "q0", "chosen": "circle", "rejected": "square"}, {"kind": "pair", "id": "q2", "chosen": "square", "rejected": "circle"}]
    r = rep.error_resemblance(heldout, ["square", "circle", "triangle"], entries, truth)
    assert r["shape"]["clean"] == {"square": 1, "triangle": 1}
    assert r["shape"]["rejected"] == {"square": 1, "circle": 1}
    assert r["shape"]["overlap"] == pytest.approx(0.5)


def test_report_prints_the_figures_it_is_given():
    """Change a figure, and the printed report changes with it."""
    base = {
        "seed": 3,
        "sizes": {"sft": 10, "unlabeled": 7, "heldout": 4},
        "noise": {"steps": [0, 900], "accuracy": [{"color": 0.75, "all": 0.75}, {"color": 0.25, "all": 0.25}]},
        "pairs": {
            "step": 900,
            "prompts": 7,
            "kept": 5,
            "dropped": {"identical": 2},
            "rejected": {},
            "precision": {
                "kept": {"n": 5, "chosen_correct": 0.8, "rejected_correct": 0.2, "useful": 0.6, "inverted": 0.2, "both_wrong": 0.2},
                "identical": {"n": 2, "chosen_correct": 1.0},
            },
        },
        "resemblance": {"color": {"clean": {"blue": 1}, "rejected": {"blue": 1, "green": 3}, "overlap": 0.25}},
        "dpo": {
            "before": {"color": 0.75, "all": 0.75},
            "after": {"color": 1.0, "all": 1.0},
            "before_noised": {"all": 0.25},
            "after_noised": {"all": 0.5},
            "fixed": 1,
            "broken": 0,
        },
        "recipes": {"sft": "s.yaml", "dpo": "d.yaml"},
        "paths": {"sft": "/m", "adapter": "/a", "pairs": "/p.jsonl", "data_dir": "/d", "name": "n", "report": "/r.json"},
    }
    text = rep.format_report(base)
    for figure in (
        "kept 5",
        "identical 2",
        "chosen correct  80.0%",
        "rejected correct  20.0%",
        "75.0% -> 100.0%",
        "+25.0 points",
        "fixed 1",
        "25.0% -> 50.0%",
        "green 75%",
        "/a",
    ):
        assert figure in text, figure
    changed = json.loads(json.dumps(base))
    changed["pairs"]["precision"]["kept"]["chosen_correct"] = 0.4
    changed["dpo"]["after"]["all"] = 0.5
    text2 = rep.format_report(changed)
    assert "chosen correct  40.0%" in text2 and "-25.0 points" in text2


def test_pope_probes_from_the_worlds_objects(tmp_path):
    """Each image's objects are its shape, its colour and both; the report prints the figures it is
    given, how many answers were a yes or a no, and says why the figures mean little when few were."""
    from seva_plugin.commands.demo import pope
    from seva_plugin.commands.demo.world import make_world

    world = make_world(str(tmp_path / "world"), seed=0, n_sft=0, n_unlabeled=0, n_heldout=3)
    objects = pope.image_objects(world.heldout)
    for ex in world.heldout:
        colour, shape = objects[ex.image][0].split()
        assert objects[ex.image] == [f"{colour} {shape}", shape, f"{colour} shape"]
        assert ex.answer == {"color": colour, "shape": shape}.get(ex.kind, ex.answer)
    lines = [json.loads(line) for line in open(pope.write_objects(world.heldout, str(tmp_path / "o.jsonl")))]
    assert lines == [{"image": image, "objects": objs} for image, objs in objects.items()]
    (tmp_path / "run").mkdir()
    answers = ["Yes.", "no", "red", "", "No, none", "circle"]
    (tmp_path / "run" / "predictions.jsonl").write_text("".join(json.dumps({"answer": a}) + "\n" for a in answers))
    assert pope.yes_no_share(str(tmp_path / "run")) == 0.5

    def figures(f1, acc, yes):
        return {"f1": f1, "accuracy": acc, "yes_ratio": yes}

    setting = {"n": 18, "a": figures(0.5, 0.6, 0.7), "b": figures(0.75, 0.8, 0.55), "change": {"accuracy": 0.2}, "fixed": 5, "broken": 1}
    setting |= {"mcnemar": {"p": 0.2, "test": "exact binomial"}, "yes_shift": {"p": 0.3}, "yes_to_no": 4, "no_to_yes": 1}
    shares = {"base": 0.0, "adapter": 0.25}
    text = "\n".join(pope.report_lines({"figures": {"runs": ["base", "adapter"], "settings": {"adversarial": setting}}, "yes_no_answers": shares}))
    assert "50.0 -> 75.0" in text and "60.0 -> 80.0" in text and "70.0 -> 55.0" in text and "5 answers fixed, 1 broken" in text
    assert "not distinguishable from chance (McNemar p = 0.2" in text
    assert "answers that are a yes or a no: 0.0% base, 25.0% adapter." in text and "never yes or no" in text
    taught = "\n".join(pope.report_lines({"figures": {"settings": {"random": {"n": 6, **figures(0.5, 0.5, 1.0)}}}, "yes_no_answers": {"base": 0.9}}))
    assert "random" in taught and "100.0" in taught and "never yes or no" not in taught


@pytest.mark.slow
def test_small_demo_end_to_end_from_the_installed_package_in_an_empty_folder(tmp_path):
    """``seva demo --small`` from a non-editable install, run in an empty folder (no checkout in
    sight): the real llamafactory-cli SFT and DPO runs, and a report whose figures match what the
    files on disk say."""
    pytest.importorskip("llamafactory")
    import subprocess
    import sys

    from helpers import REPO
    from seva_plugin.commands.demo.world import is_correct, make_world, truth_table
    from seva_plugin.commands.gallery import inspect_dataset

    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site), REPO], check=True, capture_output=True
    )
    work = tmp_path / "empty"
    work.mkdir()
    code = (
        "import seva_plugin, sys; print(seva_plugin.__file__, file=sys.stderr); from seva_plugin.commands.cli import main; sys.exit(main(['demo', "
        "'--small', '--out', 'demo']))"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-3000:]
    assert str(site) in run.stderr.splitlines()[0]  # the installed copy ran, not the checkout
    printed = run.stdout
    demo = work / "demo"
    assert printed.strip() == (demo / "report.txt").read_text().strip()
    r = json.loads((demo / "report.json").read_text())

    # pairs kept and dropped add up to the prompts, and match the files
    p = r["pairs"]
    assert p["kept"] + sum(p["dropped"].values()) + sum(p["rejected"].values()) == p["prompts"]
    rows = [json.loads(line) for line in open(r["paths"]["pairs"])]
    assert len(rows) == p["kept"]

    # pair precision recomputed from the written pairs and the world's ground truth
    world = make_world(str(demo / "world"), seed=0, n_sft=150, n_unlabeled=60, n_heldout=30)
    truth = truth_table(world)
    if rows:
        chosen_ok = sum(is_correct(x["chosen"]["value"], truth[x["id"]].answer) for x in rows) / len(rows)
        assert p["precision"]["kept"]["chosen_correct"] == pytest.approx(chosen_ok)
        assert f"chosen correct {100 * chosen_ok:5.1f}%" in printed
        assert r["paths"]["adapter"] in printed
        assert (demo / "dpo_adapter" / "adapter_config.json").exists()
    # accuracy rows: one per noise step, each in [0, 1], t=0 equal to the "before" figure
    assert r["noise"]["steps"][0] == 0 and len(r["noise"]["accuracy"]) == len(r["noise"]["steps"])
    assert r["noise"]["accuracy"][0] == r["dpo"]["before"]
    assert all(0 <= a["all"] <= 1 for a in r["noise"]["accuracy"])
    # fixed - broken is exactly the change in correct answers
    n = r["sizes"]["heldout"]
    assert round((r["dpo"]["after"]["all"] - r["dpo"]["before"]["all"]) * n) == r["dpo"]["fixed"] - r["dpo"]["broken"]

    # the POPE-style probes: the figures are those of seva eval's own outputs, before and after DPO
    assert "4. POPE-style probes on the held-out images" in printed
    runs = ("base", "adapter") if rows else ("",)
    predictions = {run: [json.loads(line) for line in open(demo / "pope" / run / "predictions.jsonl")] for run in runs}
    settings = r["pope"]["figures"]["settings"]
    for setting, s in settings.items():
        assert s["n"] == sum(p["setting"] == setting for p in predictions[runs[0]]) == 30 * 6  # 30 images, 6 probes each
        if rows:
            assert f"{100 * s['a']['f1']:.1f} -> {100 * s['b']['f1']:.1f}" in printed

    # and the gallery of the demo's pairs shows each of them
    html = tmp_path / "gallery.html"
    inspect_dataset(r["paths"]["data_dir"], r["paths"]["name"], html=str(html), sample=None)
    assert html.read_text().count('data-status="kept"') == p["kept"]


def test_noised_evaluation_is_paired_before_and_after(tiny_llava, tmp_path):
    """The demo compares noised accuracy before and after DPO: both must see the same noise.
    Noise used to be seeded by the view's position in a list (4 before, 1 after); now by the
    view's explicit id, so a view answers the same wherever it stands in the list."""
    from seva_plugin.api import augmenter
    from seva_plugin.commands.demo.evaluate import answers
    from seva_plugin.commands.demo.world import make_world
    from seva_plugin.interfaces import CLEAN, View
    from seva_plugin.plugins.backends.hf import HfBackend

    world = make_world(str(tmp_path / "world"), seed=0, n_sft=0, n_unlabeled=0, n_heldout=6)
    backend = HfBackend(model=tiny_llava, template="llava", max_new_tokens=6)
    noised = View(1, augmenter("diffusion_noise", step=900))
    other = View(1, augmenter("diffusion_noise", step=200))
    before = answers(backend, world.heldout, [CLEAN, other, noised], seed=0)
    after = answers(backend, world.heldout, [CLEAN, noised], seed=0)
    assert before[2] == after[1]
    assert before[0] == after[0]


def test_the_demo_model_fits_vllms_cpu_attention(tmp_path):
    """Issue 24, point 9: the demo's tiny LLaVA had head size 16, which vLLM's CPU attention refuses;
    a user could not try `backend.name=vllm` on the demo's model."""
    pytest.importorskip("vllm")
    from seva_plugin.commands.demo.run import prepare_base_model
    from seva_plugin.plugins.backends.vllm_inputs import check_cpu_head_dim, read_config

    path = prepare_base_model(str(tmp_path / "tiny_llava"), seed=0)
    check_cpu_head_dim(path, read_config(path))  # raises ConfigError on a head size vLLM's CPU attention cannot run


# -- the demo with the label-free strategies (docs/label-free.md) -------------------------------------
def test_demo_strategy_reaches_the_run_and_picks_its_build_template(monkeypatch):
    from seva_plugin.commands import cli
    from seva_plugin.commands.demo import run

    seen = {}
    monkeypatch.setattr("seva_plugin.commands.demo.run.run_demo", lambda out, small, seed, strategy: seen.update(strategy=strategy) or {})
    assert cli.main(["demo", "--strategy", "rlaifv", "--out", "x"]) == 0
    assert seen == {"strategy": "rlaifv"}
    assert {s: p.name for s, p in run.BUILD_CONFIGS.items()} == {"seva": "demo_seva.yaml", "stic": "demo_stic.yaml", "rlaifv": "demo_rlaifv.yaml"}
    with pytest.raises(SystemExit):
        cli.main(["demo", "--strategy", "csr"])


@pytest.mark.parametrize("strategy", ["stic", "rlaifv"])
def test_demo_build_templates_make_pairs_on_the_world(strategy, tiny_llava, feedback_llava, tmp_path):
    """The demo's build step as ``run_demo`` makes it (the template, its overrides), on a few world prompts."""
    from seva_plugin import api
    from seva_plugin.commands.demo.run import BUILD_CONFIGS
    from seva_plugin.commands.demo.world import make_world, write_prompts
    from seva_plugin.pipeline.config import load_config

    world = make_world(str(tmp_path / "world"), seed=0, n_sft=0, n_unlabeled=4, n_heldout=0)
    prompts = write_prompts(world.unlabeled, str(tmp_path / "unlabeled.jsonl"))
    model = feedback_llava if strategy == "rlaifv" else tiny_llava
    overrides = [f"model={model}", f"source.file={prompts}", f"output.dataset_dir={tmp_path / 'data'}", "seed=0", "limit=4", "backend.batch_size=4"]
    config = load_config(str(BUILD_CONFIGS[strategy]), overrides)
    assert config.augment["step"] == 900  # what the demo's noise evaluation reads
    result = api.build(config, progress=False)
    rows = [json.loads(line) for line in open(result.data_file)]
    assert rows and all(r["provenance"]["strategy"] == strategy for r in rows)

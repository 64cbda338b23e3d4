"""A user's first hour: the README's command works as written, a build that keeps nothing says why
and exits non-zero, iterate checks the recipe before round 0, the gallery tells CSR as it is, the
progress bar counts what it says (issue 15, items 14, 16-18)."""

from __future__ import annotations

import json
import os
import re
import shlex

import pytest
import yaml
from PIL import Image

from helpers import REPO, answer, use_backends
from seva_plugin.commands.cli import main
from seva_plugin.interfaces import Backend
from seva_plugin.pipeline.config import load_config, source_spec
from seva_plugin.registry import get_registry

TEMPLATE = os.path.join(REPO, "data_templates", "seva_llava_t500.yaml")


def readme_build_command() -> list[str]:
    """The first ``seva build`` line of the README's "Use" section, split as a shell would."""
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    use = text.split("## Use", 1)[1]
    line = next(line for line in use.splitlines() if line.startswith("seva build "))
    return shlex.split(line)


@pytest.fixture
def llava_layout(tmp_path) -> str:
    """LLaVA-1.5's layout somewhere else than playground/data: the JSON beside ocr_vqa/ and textvqa/."""
    root = tmp_path / "llava_data"
    rows = []
    for i in range(2):
        for sub, rid, question in [
            ("ocr_vqa/images", f"ocr{i}", "<image>\nWho wrote this book?\nAnswer the question using a single word or phrase."),
            ("textvqa/train_images", f"tv{i}", "<image>\nProvide a one-sentence caption for the provided image."),
        ]:
            folder = root / sub
            folder.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (40, 32), (200, 40 * i, 30)).save(folder / f"{rid}.jpg")
            rows.append({"id": rid, "image": f"{sub}/{rid}.jpg", "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": "x"}]})
    path = root / "llava_v1_5_mix665k.json"
    path.write_text(json.dumps(rows))
    return str(path)


def readme_overrides(llava_json: str) -> tuple[str, list[str]]:
    cmd = readme_build_command()
    assert cmd[:3] == ["seva", "build", "data_templates/seva_llava_t500.yaml"]
    overrides = [re.sub(r"^source\.file=.*", f"source.file={llava_json}", a) for a in cmd[3:]]
    assert overrides == [f"source.file={llava_json}"]  # the README's command overrides the file, nothing else
    return os.path.join(REPO, cmd[2]), overrides


def test_the_readme_command_finds_every_image(llava_layout, tmp_path, monkeypatch):
    """The template kept `image_dir: playground/data` when source.file pointed elsewhere: every
    image went missing."""
    monkeypatch.chdir(tmp_path)  # not the checkout: no playground/ here
    template, overrides = readme_overrides(llava_layout)
    cfg = load_config(template, overrides)
    name, params = source_spec(cfg.source)
    source = get_registry().get("source", name).build(params, "source", seed=cfg.seed)
    records = list(source.iter_records())
    assert len(records) == 4  # 2 OCR-VQA images with one question each, 2 TextCaps images
    for record in records:
        assert all(os.path.isfile(p) for p in record.images), record


def test_the_readme_command_builds_pairs(llava_layout, tiny_llava, tmp_path, monkeypatch, capsys):
    """The README's command, with the model swapped for the tiny offline one, builds pairs."""
    monkeypatch.chdir(tmp_path)
    template, overrides = readme_overrides(llava_layout)
    code = main(["build", template, *overrides, f"model={tiny_llava}", "backend.dtype=float32", "backend.max_new_tokens=4", "--no-progress"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert (tmp_path / "data" / "seva_llava_t500.rejects.jsonl").read_text() == ""  # every image found
    assert [json.loads(line) for line in open(tmp_path / "data" / "seva_llava_t500.jsonl")]


@pytest.mark.parametrize("name", sorted(n for n in os.listdir(os.path.join(REPO, "data_templates")) if n.endswith(".yaml")))
def test_no_llava_layout_template_pins_the_image_folder(name):
    """The same trap in every template of LLaVA-1.5's layout: an `image_dir` that does not follow
    `source.file` when a user points it elsewhere."""
    config = yaml.safe_load(open(os.path.join(REPO, "data_templates", name)))
    source = config.get("source") or {}
    if source.get("preset") == "seva":
        assert "image_dir" not in source, f"{name}: leave image_dir out (default: the folder of source.file)"


# -- item 14: a build that keeps nothing -----------------------------------------------------------
@pytest.fixture
def fake_model(tmp_path) -> str:
    path = tmp_path / "model"
    path.mkdir()
    (path / "config.json").write_text('{"model_type": "llava"}')
    return str(path)


def test_a_build_where_every_image_is_missing_exits_non_zero_and_says_why(llava_layout, fake_model, tmp_path, monkeypatch, capsys):
    """It used to exit 0 with 0 pairs and register an empty dataset."""
    monkeypatch.chdir(tmp_path)
    code = main(["build", TEMPLATE, f"source.file={llava_layout}", "source.image_dir=/nowhere", f"model={fake_model}", "--no-progress"])
    err = capsys.readouterr().err
    assert code != 0
    assert "kept no pairs" in err and "missing_file (4 of 4)" in err and "/nowhere/" in err and "Traceback" not in err
    data = tmp_path / "data"
    assert (data / "seva_llava_t500.rejects.jsonl").is_file() and (data / "seva_llava_t500.manifest.json").is_file()
    assert json.loads((data / "seva_llava_t500.manifest.json").read_text())["counts"]["rejected"] == {"missing_file": 4}
    info = data / "dataset_info.json"
    assert not info.exists() or "seva_llava_t500" not in json.loads(info.read_text())
    assert not (data / "seva_llava_t500.jsonl").exists()


class Parrot(Backend):
    """The same answer on every view: every pair is dropped as identical."""

    name = "parrot"

    def __init__(self, model, template, batch_size: int = 4):
        self.batch_size = batch_size

    def generate(self, requests):
        return [answer(["red"] * r.n) for r in requests]


class Twins(Parrot):
    name = "twins"

    def generate(self, requests):
        return [answer(["red" if r.view.clean else "blue"] * r.n) for r in requests]


@pytest.fixture
def scripted(monkeypatch):
    use_backends(monkeypatch, Parrot, Twins)


@pytest.fixture
def jsonl_config(fake_model, tmp_path) -> dict:
    from helpers import make_images

    names = make_images(tmp_path / "images", 3)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "image": f"images/{n}", "question": "Colour?"}) + "\n" for i, n in enumerate(names)))
    return {"model": fake_model, "template": "llava", "source": {"file": str(prompts)}, "output": {"dataset_dir": str(tmp_path / "data"), "name": "ds"}}


def test_a_build_whose_pairs_are_all_dropped_says_why(jsonl_config, scripted):
    from seva_plugin.errors import NothingKept
    from seva_plugin.pipeline.build import build

    with pytest.raises(NothingKept, match=r"kept no pairs from 3 records \(0 rejected, 3 dropped\).*dropped as identical \(3 of 3\), e.g. p0") as err:
        build({**jsonl_config, "backend": {"name": "parrot"}}, progress=False)
    assert err.value.result.kept == 0 and err.value.result.dropped == {"identical": 3}


# -- item 18: the progress bar ---------------------------------------------------------------------
def test_the_progress_bar_counts_records_and_says_so(jsonl_config, scripted, capsys):
    from seva_plugin.pipeline.build import build

    build({**jsonl_config, "backend": {"name": "twins"}, "limit": 1}, progress=True)
    err = capsys.readouterr().err
    assert "seva build ds: 1 of 1 record done, 1 pair kept, 0 dropped, 0 rejected" in err  # the total respects limit
    assert "records/s" in err and "1 pairs" not in err


def test_the_progress_bar_has_a_total_and_an_eta_when_the_source_knows_its_length(jsonl_config, scripted, capsys, tmp_path):
    """Issue 24, point 5: a JSONL source of known length gave no total and no ETA."""
    from seva_plugin.pipeline.build import build

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(prompts.read_text() + "\n" + "not json\n")  # a blank line is no record; a bad line is a (rejected) record
    build({**jsonl_config, "backend": {"name": "twins"}}, progress=True)
    err = capsys.readouterr().err.replace("\r", "\n")
    assert "seva build ds: 4 of 4 records done, 3 pairs kept, 0 dropped, 1 rejected 100%" in err
    assert re.search(r"\[\d\d:\d\d<\d\d:\d\d, ", err)  # elapsed<remaining: the ETA


def test_a_source_that_cannot_count_keeps_the_bar_without_a_total(jsonl_config, scripted, capsys, monkeypatch):
    from seva_plugin.pipeline.build import build
    from seva_plugin.plugins.sources.jsonl import JsonlSource

    monkeypatch.setattr(JsonlSource, "estimated_length", lambda self: None)
    build({**jsonl_config, "backend": {"name": "twins"}}, progress=True)
    err = capsys.readouterr().err
    assert "seva build ds: 3 records done, 3 pairs kept" in err and "%" not in err


# -- item 16: iterate checks the recipe before round 0 ----------------------------------------------
def test_iterate_checks_the_recipe_before_round_0(tiny_llava, tmp_path, monkeypatch):
    from seva_plugin.commands import iterate as iterate_mod

    monkeypatch.setattr(iterate_mod, "llamafactory_cli", lambda: "llamafactory-cli")
    build_yaml = tmp_path / "build.yaml"
    build_yaml.write_text(yaml.safe_dump({"model": tiny_llava, "template": "llava", "source": {"file": str(tmp_path / "p.jsonl")}, "output": {"name": "it"}}))
    recipe = yaml.safe_load(open(os.path.join(REPO, "recipes", "tiny_dpo_cpu.yaml")))
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(recipe))
    iterate_mod.Iteration(str(build_yaml), str(good), rounds=1, work_dir=str(tmp_path / "run"), log=lambda m: None)  # passes
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**recipe, "learning_rat": 1e-5}))
    with pytest.raises(iterate_mod.ConfigError, match=r"(?s)recipe check.*learning_rat") as err:
        iterate_mod.Iteration(str(build_yaml), str(bad), rounds=1, work_dir=str(tmp_path / "run2"), log=lambda m: None)
    assert "round 0" in str(err.value)
    assert not (tmp_path / "run2" / "data").exists()


def test_iterate_rerun_is_quiet_about_checkpoints_it_will_not_use(tiny_llava, tmp_path, monkeypatch):
    """Issue 24, point 10a: a rerun of a finished iteration warned that LLaMA-Factory "will resume
    from" round 0's checkpoint, though round 0 is never trained again. The check now looks at the
    output_dir of the next training to run, and still warns when that one holds a checkpoint."""
    from seva_plugin.commands import iterate as iterate_mod

    monkeypatch.setattr(iterate_mod, "llamafactory_cli", lambda: "llamafactory-cli")
    build_yaml = tmp_path / "build.yaml"
    build_yaml.write_text(yaml.safe_dump({"model": tiny_llava, "template": "llava", "source": {"file": str(tmp_path / "p.jsonl")}, "output": {"name": "it"}}))
    recipe = tmp_path / "recipe.yaml"  # checkpoints kept, as recipes/csr_llava.yaml keeps them
    recipe.write_text(yaml.safe_dump({**yaml.safe_load(open(os.path.join(REPO, "recipes", "tiny_dpo_cpu.yaml"))), "overwrite_output_dir": False}))
    work = tmp_path / "run"

    def warnings() -> list[str]:
        logged: list[str] = []
        iterate_mod.Iteration(str(build_yaml), str(recipe), rounds=1, work_dir=str(work), log=logged.append)
        return [m for m in logged if "resume" in m]

    first = iterate_mod.Iteration(str(build_yaml), str(recipe), rounds=1, work_dir=str(work), log=lambda m: None)
    state = first.state
    first._round(0)
    (work / "r0" / "adapter" / "checkpoint-5").mkdir(parents=True)
    state["rounds"][0]["steps_done"] = ["build"]  # killed during training: its checkpoint will be used
    first._save()
    assert any("r0/adapter holds checkpoint-5" in m for m in warnings())
    state["rounds"][0]["steps_done"] = ["build", "train", "merge"]  # finished: nothing will be trained
    first._save()
    assert warnings() == []


# -- item 17: the gallery of a CSR build ------------------------------------------------------------
def csr_scores(reward: float) -> dict:
    side = {
        "reward": reward,
        "rank_score": reward,
        "language": -1.25,
        "visual": 0.31,
        "sentences": 2,
        "language_steps": [-1.0, -1.5],
        "visual_steps": [0.3, 0.32],
    }
    return side


def test_the_gallery_of_a_csr_build_shows_scores_and_no_pair_drops(tiny_llava, tmp_path):
    from helpers import make_images
    from seva_plugin.commands.gallery import inspect_dataset

    data = tmp_path / "data"
    names = make_images(data / "images", 3)
    config = {
        "model": tiny_llava,
        "template": "llava",
        "source": {"file": "p.jsonl"},
        "strategy": {"name": "csr", "clip_model": "x"},
        "augment": {"name": "diffusion_noise", "step": 500},  # the default: recorded, never applied by csr
        "backend": {"name": "hf"},
        "output": {"dataset_dir": str(data), "name": "csr"},
    }
    rows = []
    for i, n in enumerate(names[:2]):
        scores = {"method": "csr", "mode": "paper", "chosen": csr_scores(0.5 + i), "rejected": csr_scores(-0.75 - i), "search": {"candidates": 4}}
        rows.append(
            {
                "id": f"p{i}",
                "conversations": [{"from": "human", "value": "<image>Describe it."}],
                "chosen": {"from": "gpt", "value": "A red square."},
                "rejected": {"from": "gpt", "value": "A blue circle."},
                "images": [f"images/{n}"],
                "provenance": {"strategy": "csr", "augment": None, "seed": 7},
                "scores": scores,
            }
        )
    (data / "csr.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = {"name": "csr", "config": config, "counts": {"kept": 2, "dropped": {"no_pair": 1}, "rejected": {}, "records": 3}}
    (data / "csr.manifest.json").write_text(json.dumps(manifest))
    (data / ".seva").mkdir()
    journal = [
        {"kind": "header", "fingerprint": "f"},
        {"kind": "commit"},
        *({"kind": "pair", **r} for r in rows),
        {"kind": "drop", "id": "p2", "reason": "no_pair"},
        {"kind": "commit"},
    ]
    (data / ".seva" / "csr.journal.jsonl").write_text("".join(json.dumps(e) + "\n" for e in journal))

    html = tmp_path / "g.html"
    text = inspect_dataset(str(data), "csr", html=str(html))
    assert "no_pair 1" in text
    assert "diffusion_noise" not in text and "no augmenter" in text
    page = html.read_text()
    assert "diffusion_noise" not in page
    assert "reward 0.5" in page and "reward -0.75" in page and "visual 0.31" in page

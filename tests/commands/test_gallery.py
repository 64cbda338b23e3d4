"""``seva inspect``: the summary's figures and the gallery (a seeded sample or every pair, the views
the strategy planned as the model saw them, prompts rendered by the build's template, why answers
ended, every strategy's scores and the log-prob margin). The page's script is driven in a real
browser in ``test_gallery_browser.py``."""

from __future__ import annotations

import base64
import io
import json
import re
from collections import Counter

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("llamafactory")

from helpers import answer  # noqa: E402
from seva_plugin.commands import gallery as insp  # noqa: E402
from seva_plugin.commands.gallery.data import Inspected, flat_scores, format_summary, summarise  # noqa: E402
from seva_plugin.commands.gallery.page import word_diff  # noqa: E402


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A real SeVa build (tiny random LLaVA, 6 shapes-world prompts, answers of at most 6 tokens) and its model dir."""
    from seva_plugin.api import build
    from seva_plugin.commands.demo.world import VOCAB, make_world, write_prompts
    from seva_plugin.dev.tiny_models import build_tiny_llava

    root = tmp_path_factory.mktemp("inspect")
    model = build_tiny_llava(root / "model", seed=0, vocab=VOCAB)
    world = make_world(str(root / "world"), seed=0, n_sft=0, n_unlabeled=3, n_heldout=0)
    prompts = write_prompts(world.unlabeled[:6], str(root / "prompts.jsonl"))
    config = {
        "model": model,
        "template": "llava",
        "source": {"file": prompts},
        "augment": {"name": "diffusion_noise", "step": 999},
        "backend": {"name": "hf", "max_new_tokens": 6},
        "filters": ["empty"],  # keep identical answers too: random weights may repeat themselves
        "output": {"dataset_dir": str(root / "data"), "name": "pairs"},
    }
    result = build(config, progress=False)
    assert result.kept == 6
    return root / "data", model


def pairs_in(html: str) -> list[str]:
    return re.findall(r'<section class="pair.*?</section>', html, flags=re.S)


def images_in(section: str) -> list:
    from PIL import Image

    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', section)
    return [Image.open(io.BytesIO(base64.b64decode(u))).convert("RGB") for u in uris]


def values_of(section: str) -> dict:
    import html

    return json.loads(html.unescape(re.search(r'data-values="([^"]*)"', section).group(1)))


def test_gallery_has_every_pair_with_both_views(built, tmp_path):
    data_dir, _ = built
    out = tmp_path / "g.html"
    text = insp.inspect_dataset(str(data_dir), "pairs", html=str(out))
    html = out.read_text()
    sections = pairs_in(html)
    records = [json.loads(line) for line in open(data_dir / "pairs.jsonl")]
    assert len(sections) == len(records) == 6
    for section, record in zip(sections, records, strict=True):
        clean, noised = images_in(section)  # clean and augmented, embedded: the page is self-contained
        assert clean.size == noised.size and clean.tobytes() != noised.tobytes()
        assert f'data-id="{record["id"]}"' in section and 'data-status="kept"' in section
        assert "view 1: diffusion_noise (step=999)" in section
    # nothing is fetched: no external script, style, image or link
    assert not re.search(r'<(script|img|link|iframe)[^>]+(src|href)="(?!data:)', html)
    assert "6 pairs" in text and str(out) in text


def test_the_sample_is_seeded_and_all_is_every_pair(built, tmp_path):
    data_dir, _ = built
    ids = {}
    for seed in range(6):
        out = tmp_path / f"s{seed}.html"
        text = insp.inspect_dataset(str(data_dir), "pairs", html=str(out), sample=2, seed=seed)
        ids[seed] = re.findall(r'data-id="([^"]+)"', out.read_text())
        assert len(ids[seed]) == 2 and f"a sample (seed {seed}) of 6" in text
    again = tmp_path / "again.html"
    insp.inspect_dataset(str(data_dir), "pairs", html=str(again), sample=2, seed=3)
    assert re.findall(r'data-id="([^"]+)"', again.read_text()) == ids[3]
    assert len({tuple(v) for v in ids.values()}) > 1  # the seed chooses the sample
    every = tmp_path / "all.html"
    text = insp.inspect_dataset(str(data_dir), "pairs", html=str(every), sample=None)
    order = [json.loads(line)["id"] for line in open(data_dir / "pairs.jsonl")]
    assert re.findall(r'data-id="([^"]+)"', every.read_text()) == order  # in source order
    assert "6 pairs: all kept and dropped pairs" in text


def test_cli(built, tmp_path, capsys):
    from seva_plugin.commands.cli import main

    data_dir, _ = built
    out = tmp_path / "g.html"
    assert main(["inspect", str(data_dir), "--name", "pairs", "--html", str(out), "--sample", "3", "--seed", "1"]) == 0
    assert "3 pairs: a sample (seed 1) of 6" in capsys.readouterr().out and len(pairs_in(out.read_text())) == 3
    assert main(["inspect", str(data_dir), "--name", "pairs", "--html", str(out), "--all"]) == 0
    assert len(pairs_in(out.read_text())) == 6
    with pytest.raises(SystemExit):
        main(["inspect", str(data_dir), "--name", "pairs", "--all", "--sample", "2"])
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["inspect", str(data_dir), "--name", "pairs", "--score"]) == 2
    assert "--score scores the pairs the gallery shows: add --html FILE" in capsys.readouterr().err


def _seen(maker, image):
    """What the model saw of ``image``: the processor's output, de-normalised."""
    import numpy as np

    mm = maker.renderer.mm_inputs([[image]], [[0]])
    ip = maker.processor.image_processor
    pixels = mm["pixel_values"][0].numpy()
    return np.clip(pixels.transpose(1, 2, 0) * np.array(ip.image_std) + np.array(ip.image_mean), 0, 1) * 255


def test_views_are_the_ones_the_model_saw(built):
    """Clean and noised views equal the backend's pixels for the record's seed, de-normalised."""
    import numpy as np

    from seva_plugin.pipeline.views import view_generator

    data_dir, model = built
    seen = insp.load(str(data_dir), "pairs")
    pair = seen.items[0].pair
    maker = insp.ViewMaker(seen.manifest["config"])
    image = insp.open_images(pair, str(data_dir))[0]
    (clean, view), _ = maker.views(pair, [image])
    (clean,), (view,) = clean.images, view.images
    assert clean.size != image.size or np.asarray(clean).tolist() != np.asarray(image).tolist()  # resized/cropped, as the model saw it
    assert np.abs(np.asarray(clean, dtype=float) - _seen(maker, image)).max() <= 1.0

    mm = maker.renderer.mm_inputs([[image]], [[0]])
    noised = maker.augmenter(mm["pixel_values"][0:1], view_generator(pair["provenance"]["seed"], 1, 0))[0].numpy()
    ip = maker.processor.image_processor
    expected = np.clip(noised.transpose(1, 2, 0) * np.array(ip.image_std) + np.array(ip.image_mean), 0, 1) * 255
    assert np.abs(np.asarray(view, dtype=float) - expected).max() <= 1.0
    # a different seed gives different noise, so the match above is not an accident
    other = maker.views({**pair, "provenance": {**pair["provenance"], "seed": 1}}, [image])[0][1].images[0]
    assert np.asarray(other).tolist() != np.asarray(view).tolist()


def test_pixel_space_augmenter_view(built):
    """For ``moco`` the view is the augmented image (same seeded generator) after the processor."""
    import numpy as np

    from seva_plugin.api import augmenter
    from seva_plugin.pipeline.views import view_generator

    data_dir, model = built
    seen = insp.load(str(data_dir), "pairs")
    pair = seen.items[0].pair
    maker = insp.ViewMaker({**seen.manifest["config"], "augment": "moco"})
    image = insp.open_images(pair, str(data_dir))[0]
    (_, view), _ = maker.views(pair, [image])
    expected = _seen(maker, augmenter("moco")(image, view_generator(pair["provenance"]["seed"], 1, 0)))
    assert np.abs(np.asarray(view.images[0], dtype=float) - expected).max() <= 1.0


def test_views_and_prompts_follow_the_strategy(built, asked_elsewhere):
    """A strategy that asks its own question, twice under the clean view (once with a system text),
    gets no augmented view and both of its prompts, rendered by the build's template exactly as the
    backend renders them; the question shown is the one its pair carries."""
    from seva_plugin import GenerationRequest, LoadedRecord, PromptRecord

    data_dir, _ = built
    seen = insp.load(str(data_dir), "pairs")
    config = {**seen.manifest["config"], "strategy": asked_elsewhere}
    maker = insp.ViewMaker(config)
    pair = {**seen.items[0].pair, "prompt": "<image>Describe the colours you see."}  # what this strategy's pairs carry
    images = insp.open_images(pair, str(data_dir))
    shown, asked = maker.views(pair, images)
    assert [v.label for v in shown] == ["clean"]
    loaded = LoadedRecord(PromptRecord(pair["id"], pair["prompt"], []), images, 0)
    for got, system in zip(asked, (None, "Answer with something false."), strict=True):
        rendered = maker.renderer.render(GenerationRequest(loaded, prompt="<image>Describe the colours you see.", system=system))
        assert got.text == insp.views.collapse_runs(rendered.text) and "Describe the colours you see." in got.text
        assert "<image>×" in got.text and "<image><image>" not in got.text  # the image tokens, counted
    assert "Answer with something false." in asked[1].text and "Answer with something false." not in asked[0].text

    from seva_plugin.commands.gallery.data import Item
    from seva_plugin.commands.gallery.page import render_item

    section = render_item(1, Item(pair, 0), shown, asked)
    assert '<div class="q">Describe the colours you see.</div>' in section


def test_views_render_with_the_keys_of_the_build_backend(built):
    """The renderer takes the keys that shape what the model sees from the build's backend, whichever
    it is (no hf backend is made for a vllm build)."""
    data_dir, _ = built
    config = insp.load(str(data_dir), "pairs").manifest["config"]
    maker = insp.ViewMaker({**config, "backend": {"name": "vllm", "image_max_pixels": 4096, "gpu_memory_utilization": 0.3}})
    assert maker.processor.image_max_pixels == 4096
    vllm = {"backend": {"name": "vllm", "image_max_pixels": 4096, "max_model_len": 99, "trust_remote_code": True}}
    assert insp.views.rendering_keys(vllm) == {"image_max_pixels": 4096, "trust_remote_code": True}  # a vllm build's remote code too


def test_no_augmented_view_for_strategies_without_one(built):
    """CSR answers on the clean image only, so the gallery shows no second view for it."""
    data_dir, _ = built
    seen = insp.load(str(data_dir), "pairs")
    pair = seen.items[0].pair
    image = insp.open_images(pair, str(data_dir))[0]
    maker = insp.ViewMaker({**seen.manifest["config"], "strategy": {"name": "csr", "clip_model": "x"}})
    shown, _ = maker.views(pair, [image])
    assert [v.label for v in shown] == ["clean"] and len(shown[0].images) == 1 and maker.note == ""


def test_the_build_notes_why_each_answer_ended(built, tmp_path):
    """The journal says why each answer ended, as the backend reports it for the same requests; the
    data file does not; the gallery flags the answers cut at max_new_tokens."""
    from seva_plugin.api import augmenter
    from seva_plugin.pipeline.dataset_files import DatasetFiles
    from seva_plugin.plugins.backends.hf import HfBackend
    from seva_plugin.plugins.strategies.seva import Seva

    data_dir, model = built
    entries = [e for e in DatasetFiles(str(data_dir), "pairs").journal_entries() if e["kind"] == "pair"]
    seen = insp.load(str(data_dir), "pairs")
    backend = HfBackend(model, "llava", max_new_tokens=6)
    noise = augmenter("diffusion_noise", step=999)
    from seva_plugin import LoadedRecord, PromptRecord

    for entry, item in zip(entries, seen.items, strict=True):
        loaded = LoadedRecord(PromptRecord(item.id, item.pair["prompt"], []), insp.open_images(item.pair, str(data_dir)), item.pair["provenance"]["seed"])
        (clean,), (noised,) = backend.generate(Seva().planned_requests([loaded], noise))
        assert entry["finish"] == {"chosen": clean.finish_reason, "rejected": noised.finish_reason}
        assert item.finish == entry["finish"]
    backend.close()
    assert all("finish" not in json.loads(line) for line in open(data_dir / "pairs.jsonl"))
    cut = Counter(side for e in entries for side, why in e["finish"].items() if why == "length")
    assert cut, "answers of at most 6 tokens from a random model: some hit the limit"
    out = tmp_path / "g.html"
    text = insp.inspect_dataset(str(data_dir), "pairs", html=str(out))
    assert f"cut at max_new_tokens: chosen {cut['chosen']}, rejected {cut['rejected']} of 6 pairs" in text
    for section, item in zip(pairs_in(out.read_text()), seen.items, strict=True):
        assert f'data-truncated="{" ".join(item.truncated)}"' in section
        assert ("cut at max_new_tokens:" in section) == bool(item.truncated)


def test_noting_keeps_the_later_ending_of_a_continued_answer():
    """CSR-like: an answer grown sentence by sentence (its first cut at the token limit, the next at a
    stop string) until the model ends it: it ended by eos. Scripted backend (no model: the noting logic alone)."""
    from seva_plugin import CLEAN, GenerationRequest, LoadedRecord, Pair, PromptRecord
    from seva_plugin.interfaces import Backend
    from seva_plugin.pipeline.endings import NotingBackend

    class Scripted(Backend):
        name = "scripted"

        def generate(self, requests):
            ended = {"": ([" A red"], "length"), " A red": ([" and more."], "stop"), " A red and more.": ([""], "eos")}
            return [answer(*ended[r.prefix]) for r in requests]

    record = LoadedRecord(PromptRecord("a", "<image>Q?", []), [], 0)
    noting = NotingBackend(Scripted())
    assert noting.name == "scripted" and noting.batch_size == 8
    noting.generate([GenerationRequest(record, CLEAN)])
    assert noting.finish(Pair(record.record, "A red", "A red")) == {"chosen": "length", "rejected": "length"}
    noting.generate([GenerationRequest(record, CLEAN, prefix=" A red")])
    assert noting.finish(Pair(record.record, "A red and more.", "A red")) == {"chosen": "stop", "rejected": "length"}
    noting.generate([GenerationRequest(record, CLEAN, prefix=" A red and more.")])  # ended right away: ""
    assert noting.finish(Pair(record.record, "A red and more.", "Other")) == {"chosen": "eos"}  # stripped, as CSR's answers are


def test_every_strategy_scores_are_numbers_to_sort_by():
    csr = {"method": "csr", "chosen": {"reward": 1.5, "visual": 0.3, "steps": [1, 2]}, "rejected": {"reward": -0.5, "visual": 0.1}, "search": {"depth": 3}}
    assert flat_scores(csr) == {
        "chosen.reward": 1.5,
        "chosen.visual": 0.3,
        "rejected.reward": -0.5,
        "rejected.visual": 0.1,
        "search.depth": 3.0,
        "Δ reward": 2.0,
        "Δ visual": pytest.approx(0.2),
    }
    assert flat_scores({"chosen": -3.0, "rejected": -5.5, "tokens": 4, "flag": True}) == {"chosen": -3.0, "rejected": -5.5, "tokens": 4.0, "Δ": 2.5}
    assert flat_scores(None) == {} and flat_scores({"x": float("nan")}) == {}


def test_score_adds_the_log_prob_margin_under_the_clean_view(built, tmp_path):
    """--score: log p(chosen) - log p(rejected), each scored by the build's backend under the clean
    view with the pair's prompt (the contract's score), per pair and per token."""
    from seva_plugin import CLEAN, LoadedRecord, PromptRecord, ScoreRequest
    from seva_plugin.plugins.backends.hf import HfBackend

    data_dir, model = built
    out = tmp_path / "g.html"
    insp.inspect_dataset(str(data_dir), "pairs", html=str(out), score=True)
    html = out.read_text()
    assert '<option value="margin">margin</option>' in html
    backend = HfBackend(model, "llava")
    for section, item in zip(pairs_in(html), insp.load(str(data_dir), "pairs").items, strict=True):
        loaded = LoadedRecord(PromptRecord(item.id, item.pair["prompt"], []), insp.open_images(item.pair, str(data_dir)), 0)
        chosen, rejected = backend.score([ScoreRequest(loaded, CLEAN, item.pair[side]) for side in ("chosen", "rejected")])
        values = values_of(section)
        assert values["margin"] == pytest.approx(chosen.total - rejected.total, abs=1e-4)
        per_token = chosen.total / len(chosen.logprobs) - rejected.total / len(rejected.logprobs)
        assert values["margin_per_token"] == pytest.approx(per_token, abs=1e-4)
    backend.close()


def test_score_needs_a_backend_that_scores(built, tmp_path):
    """--score on a build whose backend does not serve Backend.score: one clear error, before any model loads."""
    import shutil
    from dataclasses import dataclass

    from seva_plugin import hookimpl
    from seva_plugin.errors import ConfigError
    from seva_plugin.interfaces import Backend
    from seva_plugin.registry import get_plugin_manager, get_registry

    @dataclass
    class NoScore(Backend):
        name = "test_no_score"
        model: str
        template: str

        def generate(self, requests):
            raise AssertionError("nothing is generated here")

    class Plugin:
        @hookimpl
        def register_backends(self, register):
            register(NoScore)

    data_dir, _ = built
    copy = shutil.copytree(data_dir, tmp_path / "data")
    manifest = json.loads((copy / "pairs.manifest.json").read_text())
    manifest["config"]["backend"] = {"name": "test_no_score"}
    (copy / "pairs.manifest.json").write_text(json.dumps(manifest))
    plugin = Plugin()
    get_plugin_manager().register(plugin, name="test-no-score")
    get_registry.cache_clear()
    try:
        with pytest.raises(ConfigError, match="--score needs a backend that scores texts .* 'test_no_score' does not"):
            insp.inspect_dataset(str(copy), "pairs", html=str(tmp_path / "g.html"), score=True)
    finally:
        get_plugin_manager().unregister(plugin)
        get_registry.cache_clear()
    assert not (tmp_path / "g.html").exists()


def test_a_pair_whose_views_fail_is_shown_as_it_is(built, tmp_path, monkeypatch):
    data_dir, _ = built

    def fails(self, pair, images):
        if pair["id"] == insp.load(str(data_dir), "pairs").items[1].id:
            raise RuntimeError("the processor choked")
        return original(self, pair, images)

    original = insp.ViewMaker.views
    monkeypatch.setattr(insp.ViewMaker, "views", fails)
    out = tmp_path / "g.html"
    insp.inspect_dataset(str(data_dir), "pairs", html=str(out))
    sections = pairs_in(out.read_text())
    assert len(sections) == 6 and len(images_in(sections[1])) == 1 and len(images_in(sections[0])) == 2
    assert "its views could not be rebuilt: the processor choked" in sections[1]


def test_summary_figures():
    manifest = {"counts": {"dropped": {"identical": 1, "empty_rejected": 1}, "rejected": {"missing_file": 1}}}
    journal = Counter({"generated": 4, "identical": 1, "drop:identical": 1, "drop:empty_rejected": 1, "noted": 2, "truncated:rejected": 1})
    seen = Inspected("x", ".", manifest, [], 4, {"chosen": [3, 1], "rejected": [1, 2]}, journal)
    s = summarise(seen)
    assert s["pairs"] == 2 and s["generated"] == 4
    assert s["identical_rate"] == pytest.approx(1 / 4)
    assert s["chosen_words"] == {"mean": 2.0, "median": 2.0, "max": 3}
    assert s["rejected_words"]["mean"] == 1.5
    text = format_summary("x", s, manifest)
    assert "identical rate: 25.0% of 4" in text and "empty_rejected 1, identical 1" in text and "missing_file 1" in text
    assert "cut at max_new_tokens: chosen 0, rejected 1 of 2 pairs" in text
    assert "not recorded" in format_summary("x", summarise(Inspected("x", ".", manifest, [], 2, seen.words, Counter())), manifest)


def test_word_diff_marks_only_the_differences():
    a, b = word_diff("the shape is red", "the shape is <blue>")
    assert a == 'the shape is <mark class="del">red</mark>'
    assert b == 'the shape is <mark class="ins">&lt;blue&gt;</mark>'
    assert word_diff("same words", "same words") == ("same words", "same words")


def test_missing_dataset_is_a_clear_error(tmp_path):
    from seva_plugin.errors import ConfigError

    with pytest.raises(ConfigError, match="no dataset 'nope'"):
        insp.inspect_dataset(str(tmp_path), "nope")
    with pytest.raises(ConfigError, match="--sample must be"):
        insp.inspect_dataset(str(tmp_path), "nope", html="x.html", sample=-1)


@pytest.mark.parametrize("layout", [{"format": "parquet"}, {"writer": "trl"}])
def test_builds_with_embedded_images_show_the_same_gallery(built, tmp_path, layout):
    """Parquet and TRL builds (images embedded) are read back through the writers' own reader:
    the same pairs, the same clean and noised views as the JSONL build of the same journal."""
    from seva_plugin.commands.export import export

    data_dir, _ = built
    out = tmp_path / "out"
    to = "trl" if layout.get("writer") == "trl" else "parquet"
    export(str(data_dir), "pairs", to, str(out))
    html_jsonl, html_other = tmp_path / "a.html", tmp_path / "b.html"
    insp.inspect_dataset(str(data_dir), "pairs", html=str(html_jsonl))
    text = insp.inspect_dataset(str(out), "pairs", html=str(html_other))
    assert "6 pairs" in text
    a, b = pairs_in(html_jsonl.read_text()), pairs_in(html_other.read_text())
    assert len(a) == len(b) == 6
    for x, y in zip(a, b, strict=True):
        assert [i.tobytes() for i in images_in(x)] == [i.tobytes() for i in images_in(y)]


def test_rlaifv_pairs_show_each_answers_claims_and_probe_scores():
    """Issue 22: the gallery shows why an RLAIF-V answer won: its claims, their probes and the labeler's
    probabilities, a row per claim, from the scores the strategy records."""
    from seva_plugin.commands.gallery.data import Item
    from seva_plugin.commands.gallery.page import render_item
    from seva_plugin.plugins.strategies.rlaifv.pairing import Judged

    chosen = Judged(0, "A dog sits.", ["There is a dog."], ["Is there a dog?"], [0.9], [0.1])
    rejected = Judged(3, "A cat & a dog.", ["There is a cat.", "There is a dog."], ["Is there a cat?", "Is there a dog?"], [0.2, 0.8], [0.7, 0.1])
    scores = {"method": "rlaifv", "chosen": chosen.describe(), "rejected": rejected.describe()}
    pair = {"id": "r1", "prompt": "<image>What is here?", "chosen": chosen.text, "rejected": rejected.text, "images": [], "scores": scores}
    section = render_item(1, Item(pair, 0), [], [])
    tables = re.findall(r'<details class="why"><summary>(\d+) claims</summary>(.*?)</details>', section)
    assert [n for n, _ in tables] == ["1", "2"]
    rows = re.findall(r"<tr>(.*?)</tr>", tables[1][1])
    assert "<th>claims</th><th>questions</th><th>p yes</th><th>p no</th><th>accepted</th>" in rows[0]
    assert rows[1] == "<td>There is a cat.</td><td>Is there a cat?</td><td>0.2</td><td>0.7</td><td>False</td>"
    assert rows[2] == "<td>There is a dog.</td><td>Is there a dog?</td><td>0.8</td><td>0.1</td><td>True</td>"

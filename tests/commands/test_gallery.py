"""``seva inspect``: the summary's figures and the gallery (one entry per pair, both views, the right views)."""

from __future__ import annotations

import base64
import io
import json
import re

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("llamafactory")

from seva_plugin.commands import gallery as insp  # noqa: E402


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A real SeVa build (tiny random LLaVA, 6 shapes-world prompts) and its model dir."""
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
    return re.findall(r'<section class="pair".*?</section>', html, flags=re.S)


def decode(uri: str):
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")


def test_gallery_has_every_pair_with_both_views(built, tmp_path):
    data_dir, _ = built
    out = tmp_path / "g.html"
    text = insp.inspect_dataset(str(data_dir), "pairs", html=str(out))
    html = out.read_text()
    sections = pairs_in(html)
    records = [json.loads(line) for line in open(data_dir / "pairs.jsonl")]
    assert len(sections) == len(records) == 6
    for section, record in zip(sections, records, strict=True):
        imgs = re.findall(r'src="(data:image/png;base64,[^"]+)"', section)
        assert len(imgs) == 2  # clean and augmented, embedded: the page is self-contained
        clean, noised = decode(imgs[0]), decode(imgs[1])
        assert clean.size == noised.size
        assert clean.tobytes() != noised.tobytes()
        assert record["id"] in section
    assert 'src="http' not in html and "<script" not in html
    assert "6 pairs" in text and str(out) in text


def test_limit_caps_the_gallery(built, tmp_path):
    data_dir, _ = built
    out = tmp_path / "g.html"
    text = insp.inspect_dataset(str(data_dir), "pairs", html=str(out), limit=2)
    html = out.read_text()
    assert len(pairs_in(html)) == 2
    assert "first 2 of 6" in html and "(2 of 6 pairs)" in text


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
    records, manifest, _ = insp.load_dataset(str(data_dir), "pairs")
    record = records[0]
    maker = insp.ViewMaker(manifest["config"])
    image = insp.open_images(record, str(data_dir))[0]
    (clean,), (view,) = maker.views(record, [image])
    assert clean.size != image.size or np.asarray(clean).tolist() != np.asarray(image).tolist()  # resized/cropped, as the model saw it
    assert np.abs(np.asarray(clean, dtype=float) - _seen(maker, image)).max() <= 1.0

    mm = maker.renderer.mm_inputs([[image]], [[0]])
    noised = maker.augmenter(mm["pixel_values"][0:1], view_generator(record["provenance"]["seed"], 1, 0))[0].numpy()
    ip = maker.processor.image_processor
    expected = np.clip(noised.transpose(1, 2, 0) * np.array(ip.image_std) + np.array(ip.image_mean), 0, 1) * 255
    assert np.abs(np.asarray(view, dtype=float) - expected).max() <= 1.0
    # a different seed gives different noise, so the match above is not an accident
    other = maker.views({**record, "provenance": {**record["provenance"], "seed": 1}}, [image])[1][0]
    assert np.asarray(other).tolist() != np.asarray(view).tolist()


def test_pixel_space_augmenter_view(built):
    """For ``moco`` the view is the augmented image (same seeded generator) after the processor."""
    import numpy as np

    from seva_plugin.api import augmenter
    from seva_plugin.pipeline.views import view_generator

    data_dir, model = built
    records, manifest, _ = insp.load_dataset(str(data_dir), "pairs")
    maker = insp.ViewMaker({**manifest["config"], "augment": "moco"})
    image = insp.open_images(records[0], str(data_dir))[0]
    _, (view,) = maker.views(records[0], [image])
    expected = _seen(maker, augmenter("moco")(image, view_generator(records[0]["provenance"]["seed"], 1, 0)))
    assert np.abs(np.asarray(view, dtype=float) - expected).max() <= 1.0


def test_summary_figures():
    records = [
        {"chosen": {"value": "a red circle"}, "rejected": {"value": "blue"}},
        {"chosen": {"value": "one"}, "rejected": {"value": "two three"}},
    ]
    journal = [
        {"kind": "pair", "id": "1", "chosen": "a red circle", "rejected": "blue"},
        {"kind": "pair", "id": "2", "chosen": "one", "rejected": "two three"},
        {"kind": "drop", "id": "3", "reason": "identical", "chosen": "x", "rejected": "x"},
        {"kind": "drop", "id": "4", "reason": "empty_rejected", "chosen": "x", "rejected": ""},
        {"kind": "reject", "id": "5", "reason": "missing", "code": "missing_file"},
    ]
    manifest = {"counts": {"dropped": {"identical": 1, "empty_rejected": 1}, "rejected": {"missing_file": 1}}}
    s = insp.summarise(records, manifest, journal)
    assert s["pairs"] == 2 and s["generated"] == 4
    assert s["identical_rate"] == pytest.approx(1 / 4)
    assert s["chosen_words"] == {"mean": 2.0, "median": 2.0, "max": 3}
    assert s["rejected_words"]["mean"] == 1.5
    text = insp.format_summary("x", s, manifest)
    assert "identical rate: 25.0% of 4" in text and "empty_rejected 1, identical 1" in text and "missing_file 1" in text


def test_word_diff_marks_only_the_differences():
    a, b = insp.word_diff("the shape is red", "the shape is <blue>")
    assert a == 'the shape is <mark class="del">red</mark>'
    assert b == 'the shape is <mark class="ins">&lt;blue&gt;</mark>'
    assert insp.word_diff("same words", "same words") == ("same words", "same words")


def test_missing_dataset_is_a_clear_error(tmp_path):
    from seva_plugin.errors import ConfigError

    with pytest.raises(ConfigError, match="no dataset 'nope'"):
        insp.inspect_dataset(str(tmp_path), "nope")


def test_no_augmented_view_for_strategies_without_one(built):
    """CSR answers on the clean image only, so the gallery shows no second view for it."""

    data_dir, _ = built
    records, manifest, _ = insp.load_dataset(str(data_dir), "pairs")
    image = insp.open_images(records[0], str(data_dir))[0]
    clean, augmented = insp.ViewMaker({**manifest["config"], "strategy": "csr"}).views(records[0], [image])
    assert len(clean) == 1 and augmented == []


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
        images_x = [decode(u) for u in re.findall(r'src="(data:image/png;base64,[^"]+)"', x)]
        images_y = [decode(u) for u in re.findall(r'src="(data:image/png;base64,[^"]+)"', y)]
        assert [i.tobytes() for i in images_x] == [i.tobytes() for i in images_y]

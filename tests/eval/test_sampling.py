"""POPE's sampling (AoiDragon/POPE utils.py) on hand-made annotations, checked rule by rule."""

from __future__ import annotations

import pytest

from seva_plugin.errors import ConfigError
from seva_plugin.eval.config import QUESTION
from seva_plugin.eval.sampling import AnnotatedImage, co_occurrence, draw_images, question_text, sample_probes

# kitchen scenes: "cup" comes with "table" most often, "person" is the most frequent object overall
IMAGES = [
    AnnotatedImage("a.jpg", "/i/a.jpg", ("cup", "table", "person")),
    AnnotatedImage("b.jpg", "/i/b.jpg", ("cup", "table", "chair", "person")),
    AnnotatedImage("c.jpg", "/i/c.jpg", ("dog", "person", "frisbee")),
    AnnotatedImage("d.jpg", "/i/d.jpg", ("apple", "cup", "table")),
    AnnotatedImage("e.jpg", "/i/e.jpg", ("person", "oven", "knife")),
]


def by_setting(probes, setting):
    return [p for p in probes if p.setting == setting]


def test_positives_are_each_images_first_objects_and_every_one_is_followed_by_an_absent_one():
    probes = sample_probes(IMAGES, ["random", "popular", "adversarial"], 2, QUESTION, seed=0)
    for setting in ("random", "popular", "adversarial"):
        mine = by_setting(probes, setting)
        assert [p.question_id for p in mine] == list(range(1, 2 * 2 * len(IMAGES) + 1))
        for k, im in enumerate(IMAGES):
            six = mine[4 * k : 4 * k + 4]
            assert [p.label for p in six] == ["yes", "no", "yes", "no"]
            assert [p.text for p in six[::2]] == [question_text(QUESTION, o) for o in im.objects[:2]]
            absent = [p.text for p in six[1::2]]
            assert all(question_text(QUESTION, o) not in absent for o in im.objects)  # never present
            assert len(set(absent)) == 2  # never asked twice about one image


def test_popular_takes_the_most_frequent_absent_objects():
    probes = by_setting(sample_probes(IMAGES, ["popular"], 2, QUESTION, seed=0), "popular")
    # frequencies: person 4, cup 3, table 3, then the rest once (first seen first: chair, dog, frisbee, apple, oven, knife)
    assert [p.text for p in probes[:4] if p.label == "no"] == [question_text(QUESTION, "chair"), question_text(QUESTION, "dog")]  # a.jpg
    assert [p.text for p in probes[8:12] if p.label == "no"] == [question_text(QUESTION, "cup"), question_text(QUESTION, "table")]  # c.jpg


def test_adversarial_takes_what_appears_with_the_present_object():
    together = co_occurrence(IMAGES)
    assert together["cup"][:2] == ["table", "person"]  # table 3 times with cup, person twice
    probes = by_setting(sample_probes(IMAGES, ["adversarial"], 2, QUESTION, seed=0), "adversarial")
    e = probes[16:20]  # e.jpg: person (with cup, table, chair, dog, frisbee, oven, knife), oven
    assert e[1].text == question_text(QUESTION, "cup")  # the object seen most often with person, not in e.jpg
    c = probes[8:12]  # c.jpg: dog (only with person, frisbee: both in c.jpg) falls back to a random absent object
    assert c[1].label == "no" and c[1].text not in {question_text(QUESTION, o) for o in ("dog", "person", "frisbee")}


def test_seeded_and_each_setting_its_own_stream():
    a = sample_probes(IMAGES, ["random", "popular"], 3, QUESTION, seed=1)
    assert a == sample_probes(IMAGES, ["random", "popular"], 3, QUESTION, seed=1)
    assert by_setting(a, "random") == by_setting(sample_probes(IMAGES, ["random"], 3, QUESTION, seed=1), "random")
    seeds = {tuple(p.text for p in sample_probes(IMAGES, ["random"], 3, QUESTION, seed=s)) for s in range(8)}
    assert len(seeds) > 1


def test_images_are_drawn_among_those_with_enough_objects():
    assert [im.image for im in draw_images(IMAGES, None, 4, seed=0)] == ["b.jpg"]
    drawn = draw_images(IMAGES, 3, 3, seed=0)
    assert len(drawn) == 3 and drawn == draw_images(IMAGES, 3, 3, seed=0) and len({im.image for im in drawn}) == 3
    with pytest.raises(ConfigError, match="num_images=2, but only 1 of the 5 images have at least 4 objects"):
        draw_images(IMAGES, 2, 4, seed=0)


def test_article_and_a_vocabulary_too_small():
    assert question_text(QUESTION, "apple") == "Is there an apple in the image?"
    assert question_text(QUESTION, "cup") == "Is there a cup in the image?"
    assert question_text("Do you see a {object}? It is an image.", "oven") == "Do you see an oven? It is an image."
    with pytest.raises(ConfigError, match="no object left"):
        sample_probes([AnnotatedImage("x", "/x", ("cat", "dog"))], ["random"], 2, QUESTION, seed=0)

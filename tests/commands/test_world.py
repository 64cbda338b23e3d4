"""The shapes world: the ground-truth answers match what is drawn, and everything is seeded."""

from __future__ import annotations

import json
import random
from collections import deque

import pytest

np = pytest.importorskip("numpy")

from seva_plugin.commands.demo import world as W  # noqa: E402


def components(img) -> list[list[tuple[int, int]]]:
    """4-connected groups of non-background pixels."""
    a = np.asarray(img).astype(int)
    fg = np.abs(a - np.array(W.BACKGROUND)).sum(-1) > 30
    seen = np.zeros_like(fg)
    out = []
    for y, x in zip(*np.nonzero(fg), strict=True):
        if seen[y, x]:
            continue
        seen[y, x] = True
        queue, pixels = deque([(y, x)]), []
        while queue:
            cy, cx = queue.popleft()
            pixels.append((cy, cx))
            for ny, nx in ((cy + 1, cx), (cy - 1, cx), (cy, cx + 1), (cy, cx - 1)):
                if 0 <= ny < fg.shape[0] and 0 <= nx < fg.shape[1] and fg[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        out.append(pixels)
    return out


def read_scene(img) -> dict:
    """What a person would answer, measured from the pixels alone."""
    a = np.asarray(img).astype(int)
    comps = components(img)
    pixels = [p for c in comps for p in c]
    mean = a[tuple(np.array(pixels).T)].mean(0)
    colour = min(W.COLOURS, key=lambda k: np.abs(mean - np.array(W.COLOURS[k])).sum())
    fills = []
    for c in comps:
        ys, xs = np.array(c).T
        fills.append(len(c) / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)))
    fill = float(np.mean(fills))  # square ~1, circle ~pi/4, triangle ~1/2
    shape = "square" if fill > 0.9 else "circle" if fill > 0.65 else "triangle"
    xs = [np.array(c)[:, 1] for c in comps]
    side = "left" if all(x.max() < W.SIZE / 2 for x in xs) else "right" if all(x.min() >= W.SIZE / 2 for x in xs) else None
    return {"color": colour, "shape": shape, "count": W.COUNTS[len(comps) - 1], "position": side}


def test_answers_match_the_pictures():
    rng = random.Random(7)
    for _ in range(150):
        scene = W.random_scene(rng)
        seen = read_scene(W.draw(scene))
        for kind in W.QUESTIONS:
            assert seen[kind] == scene.answer(kind), (kind, scene)


def test_every_kind_and_answer_occurs(tmp_path):
    world = W.make_world(str(tmp_path), seed=0, n_sft=60, n_unlabeled=10, n_heldout=10)
    answers = {(ex.kind, ex.answer) for ex in world.sft}
    expected = {("color", c) for c in W.COLOURS} | {("shape", s) for s in W.SHAPES} | {("count", c) for c in W.COUNTS} | {("position", s) for s in W.SIDES}
    assert answers == expected
    # position is asked only when all shapes share a half: every other kind once per image
    images = {ex.image for ex in world.sft}
    assert sum(ex.kind == "color" for ex in world.sft) == len(images) == 60
    assert all(W.is_correct(ex.answer, ex.answer) for ex in world.sft)


def test_seeded_and_splits_disjoint(tmp_path):
    a = W.make_world(str(tmp_path / "a"), seed=3, n_sft=20, n_unlabeled=10, n_heldout=10)
    b = W.make_world(str(tmp_path / "b"), seed=3, n_sft=20, n_unlabeled=10, n_heldout=10)
    c = W.make_world(str(tmp_path / "c"), seed=4, n_sft=20, n_unlabeled=10, n_heldout=10)
    assert [(e.question, e.answer) for e in a.sft] == [(e.question, e.answer) for e in b.sft]
    assert open(a.sft[0].image, "rb").read() == open(b.sft[0].image, "rb").read()
    assert [e.answer for e in a.sft] != [e.answer for e in c.sft]
    ids = [e.id for split in ("sft", "unlabeled", "heldout") for e in a.split(split)]
    assert len(ids) == len(set(ids))
    assert not {e.image for e in a.sft} & {e.image for e in a.heldout}


def test_scoring():
    assert W.is_correct("red", "red")
    assert W.is_correct("Red.", "red")
    assert W.is_correct("The shape is red", "red")
    assert not W.is_correct("blue", "red")
    assert not W.is_correct("blue or red", "red")  # the first world word counts
    assert not W.is_correct("", "red")
    assert not W.is_correct("redder", "red")


def test_prompt_and_sft_files_load(tmp_path):
    from seva_plugin.plugins.sources.jsonl import JsonlSource

    world = W.make_world(str(tmp_path / "w"), seed=0, n_sft=5, n_unlabeled=3, n_heldout=2)
    path = W.write_prompts(world.unlabeled, str(tmp_path / "prompts.jsonl"))
    records = list(JsonlSource(path).iter_records())
    assert [r.id for r in records] == [e.id for e in world.unlabeled]
    assert all(r.prompt.count("<image>") == 1 and r.images == [e.image] for r, e in zip(records, world.unlabeled, strict=True))

    W.write_sft_dataset(world.sft, str(tmp_path / "data"), "demo_sft")
    info = json.load(open(tmp_path / "data" / "dataset_info.json"))
    rows = json.load(open(tmp_path / "data" / "demo_sft.json"))
    assert info["demo_sft"]["file_name"] == "demo_sft.json" and "ranking" not in info["demo_sft"]
    assert len(rows) == len(world.sft)
    assert rows[0]["conversations"][1]["value"] == world.sft[0].answer

"""A procedurally drawn shapes world with ground truth, for watching SeVa work on a CPU.

Every image holds one to three shapes of one colour and one kind. Questions of four kinds
(colour, shape, count, position) have one-word answers, so a model's answer is scored by
matching that word. Everything is drawn from a seed: the same seed gives the same scenes,
questions and PNG files.
"""

from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (50, 80, 220), "yellow": (235, 200, 30)}
SHAPES = ("circle", "square", "triangle")
COUNTS = ("one", "two", "three")
SIDES = ("left", "right")
QUESTIONS = {
    "color": "What color is the shape?",
    "shape": "What shape is it?",
    "count": "How many shapes are there?",
    "position": "Is the shape on the left or the right?",
}
# every word a model may answer: the tiny tokenizer makes each one a single token
VOCAB = (*COLOURS, *SHAPES, *COUNTS, *SIDES)
SIZE = 64  # pixels; the tiny LLaVA's processor resizes to its own input size
BACKGROUND = (245, 245, 245)
MIN_SHAPE, MAX_SHAPE = 20, 25  # side of a shape's box in pixels


@dataclass(frozen=True)
class Scene:
    colour: str
    shape: str
    side: str | None  # "left"/"right" when every shape lies in that half, else None (no position question)
    boxes: tuple[tuple[int, int, int, int], ...]  # (x0, y0, x1, y1), inclusive, one per shape

    def answer(self, kind: str) -> str | None:
        return {"color": self.colour, "shape": self.shape, "count": COUNTS[len(self.boxes) - 1], "position": self.side}[kind]


@dataclass(frozen=True)
class Example:
    id: str
    image: str  # absolute path of the PNG
    question: str
    answer: str
    kind: str  # a key of QUESTIONS


def random_scene(rng: random.Random) -> Scene:
    """One to three shapes of one colour and kind, placed without overlap.

    Shapes are big (a third of the image or more): the demo's tiny model sees 48x48 pixels in
    8x8 patches, and shapes about one patch wide were barely learnable in a few hundred steps.
    One or two shapes share one half of the image (so "left or right" has an answer); three
    do not fit in a half and go anywhere.
    """
    colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
    count = rng.randint(1, 3)
    side = rng.choice(SIDES) if count < 3 else None
    x_lo, x_hi = {"left": (2, SIZE // 2 - 3), "right": (SIZE // 2 + 2, SIZE - 3), None: (2, SIZE - 3)}[side]
    while True:  # rejection sampling; a fit is always possible at these sizes
        boxes = []
        for _ in range(count):
            s = rng.randint(MIN_SHAPE, MAX_SHAPE)
            x0, y0 = rng.randint(x_lo, x_hi - s), rng.randint(2, SIZE - 3 - s)
            boxes.append((x0, y0, x0 + s, y0 + s))
        if all(_apart(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :]):
            return Scene(colour, shape, side, tuple(boxes))


def _apart(a, b, gap: int = 2) -> bool:
    return a[2] + gap < b[0] or b[2] + gap < a[0] or a[3] + gap < b[1] or b[3] + gap < a[1]


def draw(scene: Scene):
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    pen = ImageDraw.Draw(img)
    fill = COLOURS[scene.colour]
    for x0, y0, x1, y1 in scene.boxes:
        if scene.shape == "circle":
            pen.ellipse((x0, y0, x1, y1), fill=fill)
        elif scene.shape == "square":
            pen.rectangle((x0, y0, x1, y1), fill=fill)
        else:
            pen.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
    return img


@dataclass
class World:
    """The splits: ``sft`` teaches the world, ``unlabeled`` feeds SeVa, ``heldout`` measures."""

    root: str
    sft: list[Example]
    unlabeled: list[Example]
    heldout: list[Example]

    def split(self, name: str) -> list[Example]:
        return getattr(self, name)


def make_world(root: str, seed: int = 0, n_sft: int = 600, n_unlabeled: int = 300, n_heldout: int = 150, kinds=tuple(QUESTIONS)) -> World:
    """Draw ``n_*`` images per split into ``root/<split>/`` and ask every question kind about each.

    Splits draw from independent seeded streams, so resizing one split leaves the others unchanged.
    """
    splits = {}
    for index, (split, n) in enumerate((("sft", n_sft), ("unlabeled", n_unlabeled), ("heldout", n_heldout))):
        rng = random.Random(f"{seed}:{index}:{split}")
        folder = os.path.join(os.path.abspath(root), split)
        os.makedirs(folder, exist_ok=True)
        examples = []
        for i in range(n):
            scene = random_scene(rng)
            path = os.path.join(folder, f"{i:05d}.png")
            draw(scene).save(path)
            examples += [Example(f"{split}-{i:05d}-{k}", path, QUESTIONS[k], answer, k) for k in kinds if (answer := scene.answer(k))]
        splits[split] = examples
    return World(os.path.abspath(root), **splits)


# -- scoring ------------------------------------------------------------------------------
def answer_words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z]+", text.lower()) if w in VOCAB]


def is_correct(answer: str, truth: str) -> bool:
    """Correct when the first world word in the answer is the truth (so "red or blue" is wrong)."""
    words = answer_words(answer)
    return bool(words) and words[0] == truth


# -- files the pipeline and LLaMA-Factory read ----------------------------------------------
def write_prompts(examples: list[Example], path: str) -> str:
    """The unlabeled prompts as the ``jsonl`` source reads them: ``{"id", "image", "question"}``."""
    with open(path, "w", encoding="utf-8") as fh:
        for ex in examples:
            fh.write(json.dumps({"id": ex.id, "image": ex.image, "question": ex.question}) + "\n")
    return path


def write_sft_dataset(examples: list[Example], dataset_dir: str, name: str) -> str:
    """A sharegpt SFT set with images, registered in ``dataset_dir/dataset_info.json``."""
    os.makedirs(dataset_dir, exist_ok=True)
    with open(os.path.join(dataset_dir, f"{name}.json"), "w", encoding="utf-8") as fh:
        rows = [
            {"conversations": [{"from": "human", "value": "<image>" + ex.question}, {"from": "gpt", "value": ex.answer}], "images": [ex.image]}
            for ex in examples
        ]
        json.dump(rows, fh)
    info_path = os.path.join(dataset_dir, "dataset_info.json")
    info = {}
    if os.path.exists(info_path):
        with open(info_path, encoding="utf-8") as fh:
            info = json.load(fh)
    info[name] = {"file_name": f"{name}.json", "formatting": "sharegpt", "columns": {"messages": "conversations", "images": "images"}}
    with open(info_path, "w", encoding="utf-8") as fh:
        json.dump(info, fh, indent=2)
    return name


def truth_table(world: World) -> dict[str, Example]:
    return {ex.id: ex for split in ("sft", "unlabeled", "heldout") for ex in world.split(split)}

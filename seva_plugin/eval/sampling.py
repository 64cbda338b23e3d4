"""POPE's sampling of yes/no object questions from images with known objects, seeded.

As POPE's own builder does (``AoiDragon/POPE``, ``main.py`` and ``utils.py``; arXiv 2305.10355):

- images with at least ``objects_per_image`` objects are eligible, and ``num_images`` of them are
  drawn (``random.sample``; here from a seeded generator, there from the unseeded global one);
- per image, its first ``objects_per_image`` objects are asked about (label yes), each followed by
  one absent object (label no), never one already asked about this image;
- the absent object is drawn three ways: **random**, uniformly from every object of the drawn
  images; **popular**, the most frequent object (counted over the drawn images) not in the image;
  **adversarial**, the object that most often appears *together with* the present object just asked
  about and is not in the image. Popular and adversarial fall back to random when nothing is left;
- ties in frequency keep the order in which objects first appear (Python's stable sort, as there);
- question ids count from 1 per setting, positive and negative interleaved.

POPE's random draw retries ``random.choice`` until it finds an object not yet used; drawing
``choice`` from the objects left is the same distribution and never loops forever.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from seva_plugin.errors import ConfigError


@dataclass(frozen=True)
class Probe:
    """One yes/no question about one image: ``text`` is the question as written in a POPE file."""

    setting: str
    question_id: int | str
    image: str  # the image as the probes name it (a record's id)
    path: str  # the image file
    text: str
    label: str  # "yes" or "no"


@dataclass(frozen=True)
class AnnotatedImage:
    image: str  # as the annotations name it
    path: str
    objects: tuple[str, ...]  # distinct, in the annotations' order


def question_text(template: str, name: str) -> str:
    """``template`` with the object's name, "a" turned to "an" before a vowel (POPE's rule; its
    ``utils.py`` replaces every "a" of the template, which would also write "imange")."""
    if name[:1].lower() in "aeiou":
        template = re.sub(r"\ba(?= \{object\})", "an", template)
    return template.replace("{object}", name)


def draw_images(images: Sequence[AnnotatedImage], num_images: int | None, per_image: int, seed: int) -> list[AnnotatedImage]:
    """The images POPE would ask about: ``num_images`` of those with enough objects (all of them for ``None``)."""
    eligible = [im for im in images if len(im.objects) >= per_image]
    if num_images is None:
        return eligible
    if len(eligible) < num_images:
        raise ConfigError(
            f"probes.num_images={num_images}, but only {len(eligible)} of the {len(images)} images have at least "
            f"{per_image} objects (probes.objects_per_image). Lower either, or set num_images: null to use them all."
        )
    return random.Random(seed).sample(eligible, num_images)


def co_occurrence(images: Sequence[AnnotatedImage]) -> dict[str, list[str]]:
    """For each object, the objects seen in the same image, most often first (ties: first seen first)."""
    counts: dict[str, Counter[str]] = {}
    for im in images:
        for o in im.objects:
            row = counts.setdefault(o, Counter())
            for other in im.objects:
                if other != o:
                    row[other] += 1
    return {o: [k for k, _ in sorted(row.items(), key=lambda kv: -kv[1])] for o, row in counts.items()}


def sample_probes(images: Sequence[AnnotatedImage], settings: Sequence[str], per_image: int, template: str, seed: int) -> list[Probe]:
    """Every setting's probes for the drawn ``images``, setting after setting."""
    frequency = Counter(o for im in images for o in im.objects)
    everything = list(frequency)  # first-seen order
    popular = [o for o, _ in sorted(frequency.items(), key=lambda kv: -kv[1])]
    together = co_occurrence(images)
    probes: list[Probe] = []
    for setting in settings:
        rng = random.Random(f"{seed}:{setting}")  # each setting its own stream: adding one changes no other
        qid = 1
        for im in images:
            asked: list[str] = []
            for present in im.objects[:per_image]:
                asked.append(present)
                probes.append(Probe(setting, qid, im.image, im.path, question_text(template, present), "yes"))
                ranked = {"random": [], "popular": popular, "adversarial": together.get(present, [])}[setting]
                absent = next((o for o in ranked if o not in asked and o not in im.objects), None)
                if absent is None:
                    left = [o for o in everything if o not in asked and o not in im.objects]
                    if not left:
                        raise ConfigError(f"image {im.image}: no object left to ask about as absent; the annotations name too few distinct objects.")
                    absent = rng.choice(left)
                asked.append(absent)
                probes.append(Probe(setting, qid + 1, im.image, im.path, question_text(template, absent), "no"))
                qid += 2
    return probes

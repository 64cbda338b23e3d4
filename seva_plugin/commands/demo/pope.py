"""POPE-style probes on the shapes world: the world knows what each image holds, so yes/no object
questions ("Is there a red circle in the image?") can be asked and scored with ``seva eval``.

An image's objects are its shape (``circle``), its colour (``red shape``) and both (``red circle``):
three per image, POPE's default number asked about. POPE's sampling then makes the absent ones:
random (any other object), popular (the most frequent), adversarial (the objects seen most often
with the present one: ``blue circle`` for ``circle``, the same shape in another colour).

The SFT set gets one such question per image (present or absent, alternately), so the model has
learnt to answer yes or no; the SeVa pairs and DPO never see one, so the probes measure what DPO
on the other questions did to it, as POPE does for SeVa's own models.
"""

from __future__ import annotations

import json
import os
import random
from typing import Any

from seva_plugin.commands.demo.world import COLOURS, SHAPES, Example
from seva_plugin.eval.config import QUESTION

ALL_OBJECTS = [f"{c} {s}" for c in COLOURS for s in SHAPES] + list(SHAPES) + [f"{c} shape" for c in COLOURS]


def objects_of(colour: str, shape: str) -> list[str]:
    return [f"{colour} {shape}", shape, f"{colour} shape"]


def image_objects(examples: list[Example]) -> dict[str, list[str]]:
    """Each image's objects, read off its colour and shape questions (every image has both)."""
    seen: dict[str, dict[str, str]] = {}
    for ex in examples:
        if ex.kind in ("color", "shape"):
            seen.setdefault(ex.image, {})[ex.kind] = ex.answer
    return {image: objects_of(d["color"], d["shape"]) for image, d in seen.items()}


def existence_questions(examples: list[Example], seed: int) -> list[Example]:
    """One yes/no object question per image for SFT, present and absent in turn, seeded."""
    rng = random.Random(f"{seed}:existence")
    out = []
    for i, (image, objects) in enumerate(sorted(image_objects(examples).items())):
        present = i % 2 == 0
        name = rng.choice(objects if present else [o for o in ALL_OBJECTS if o not in objects])
        split = os.path.basename(os.path.dirname(image))
        out.append(Example(f"exists-{split}-{i:05d}", image, QUESTION.format(object=name), "yes" if present else "no", "exists"))
    return out


def write_objects(examples: list[Example], path: str) -> str:
    """The images' objects as ``seva eval``'s jsonl probes read them (POPE's segmentation layout)."""
    with open(path, "w", encoding="utf-8") as fh:
        for image, objects in image_objects(examples).items():
            fh.write(json.dumps({"image": image, "objects": objects}) + "\n")
    return path


def before_after(out_dir: str, model: str, adapter: str | None, heldout: list[Example], seed: int) -> dict[str, Any]:
    """``seva eval`` with ``compare: [base, adapter]`` on the held-out images (only the base without an
    adapter): POPE's three settings, generate scoring, the demo's template."""
    from seva_plugin.commands.eval import evaluate

    config = {
        "model": model,
        "template": "llava",
        "adapter": adapter,
        "backend": {"name": "hf", "batch_size": 16},
        "probes": {"format": "jsonl", "file": write_objects(heldout, os.path.join(out_dir, "heldout_objects.jsonl")), "num_images": None},
        "max_new_tokens": 4,
        "seed": seed,
        "output": {"dir": os.path.join(out_dir, "pope"), "overwrite": True},
        "compare": ["base", "adapter"] if adapter else None,
    }
    if adapter:
        return evaluate(config, progress=False, say=lambda text: None)
    report = evaluate(config, progress=False, say=lambda text: None)
    return {"runs": ["base"], "base": report}


def report_lines(pope: dict[str, Any]) -> list[str]:
    """The demo report's lines: per setting F1, accuracy and yes-ratio before and after DPO."""
    from seva_plugin.eval.compare import verdict
    from seva_plugin.eval.report import pct

    lines = ["", "4. POPE-style probes on the held-out images (yes/no: is there a <colour> <shape>, a <shape>, a <colour> shape?):"]
    if "settings" not in pope:  # no adapter: the SFT model only
        lines.append("   " + "setting".ljust(12) + "F1".rjust(8) + "accuracy".rjust(10) + "yes-ratio".rjust(11))
        for name, f in pope["base"]["settings"].items():
            lines.append("   " + name.ljust(12) + pct(f["f1"]).rjust(8) + pct(f["accuracy"]).rjust(10) + pct(f["yes_ratio"]).rjust(11))
        return lines
    lines.append("   " + "setting".ljust(12) + "n".rjust(5) + "F1 before -> after".rjust(22) + "accuracy".rjust(18) + "yes-ratio".rjust(18))
    for name, s in pope["settings"].items():
        a, b = s["a"], s["b"]
        row = f"{pct(a['f1'])} -> {pct(b['f1'])}".rjust(22) + f"{pct(a['accuracy'])} -> {pct(b['accuracy'])}".rjust(18)
        lines.append("   " + name.ljust(12) + str(s["n"]).rjust(5) + row + f"{pct(a['yes_ratio'])} -> {pct(b['yes_ratio'])}".rjust(18))
    lines += ["   " + verdict(name, s) for name, s in pope["settings"].items()]
    return lines

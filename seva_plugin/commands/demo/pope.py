"""POPE-style probes on the shapes world: the world knows what each image holds, so yes/no object
questions ("Is there a red circle in the image?") can be asked with ``seva eval`` and scored.

An image's objects are its shape (``circle``), its colour (``red shape``) and both (``red circle``):
three per image, POPE's default number asked about. POPE's sampling then makes the absent ones:
random (any other object), popular (the most frequent), adversarial (the objects seen most often
with the present one: ``blue circle`` for ``circle``, the same shape in another colour).

The demo's model learns only the world's four one-word questions, never to say yes or no, so the
report also says how many of its answers are a yes or a no: POPE's parser reads anything else as
yes, and the yes-ratio is what shows it (docs/demo.md; docs/eval.md for reading the figures).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from seva_plugin.commands.demo.world import Example


def objects_of(colour: str, shape: str) -> list[str]:
    return [f"{colour} {shape}", shape, f"{colour} shape"]


def image_objects(examples: list[Example]) -> dict[str, list[str]]:
    """Each image's objects, read off its colour and shape questions (every image has both)."""
    seen: dict[str, dict[str, str]] = {}
    for ex in examples:
        if ex.kind in ("color", "shape"):
            seen.setdefault(ex.image, {})[ex.kind] = ex.answer
    return {image: objects_of(d["color"], d["shape"]) for image, d in seen.items()}


def write_objects(examples: list[Example], path: str) -> str:
    """The images' objects as ``seva eval``'s jsonl probes read them (POPE's segmentation layout)."""
    with open(path, "w", encoding="utf-8") as fh:
        for image, objects in image_objects(examples).items():
            fh.write(json.dumps({"image": image, "objects": objects}) + "\n")
    return path


def yes_no_share(folder: str) -> float:
    """The share of a run's answers whose first word is yes or no."""
    with open(os.path.join(folder, "predictions.jsonl"), encoding="utf-8") as fh:
        firsts = [(re.findall(r"[a-z]+", json.loads(line)["answer"].lower()) or [""])[0] for line in fh]
    return sum(w in ("yes", "no") for w in firsts) / len(firsts) if firsts else 0.0


def before_after(out_dir: str, model: str, adapter: str | None, heldout: list[Example], seed: int) -> dict[str, Any]:
    """``seva eval`` with ``compare: [base, adapter]`` on the held-out images (the base alone without an
    adapter): POPE's three settings, POPE's own scoring (generate, then its parser), the demo's template."""
    from seva_plugin.commands.eval import evaluate

    out = os.path.join(out_dir, "pope")
    config = {
        "model": model,
        "template": "llava",
        "adapter": adapter,
        "backend": {"name": "hf", "batch_size": 16},
        "probes": {"format": "jsonl", "file": write_objects(heldout, os.path.join(out_dir, "heldout_objects.jsonl")), "num_images": None},
        "max_new_tokens": 4,
        "seed": seed,
        "output": {"dir": out, "overwrite": True},
        "compare": ["base", "adapter"] if adapter else None,
    }
    figures = evaluate(config, progress=False, say=lambda text: None)
    runs = {"base": os.path.join(out, "base"), "adapter": os.path.join(out, "adapter")} if adapter else {"base": out}
    return {"figures": figures, "yes_no_answers": {run: yes_no_share(folder) for run, folder in runs.items()}}


def report_lines(pope: dict[str, Any]) -> list[str]:
    """The demo report's lines: per setting F1, accuracy and yes-ratio before and after DPO, and how
    many answers were a yes or a no at all."""
    from seva_plugin.eval.compare import verdict
    from seva_plugin.eval.report import pct

    figures, shares = pope["figures"], pope["yes_no_answers"]
    lines = ["", "4. POPE-style probes on the held-out images (is there a <colour> <shape> / a <shape> / a <colour> shape in the image?):"]
    if "runs" not in figures:  # no adapter: the SFT model only
        lines.append("   " + "setting".ljust(12) + "n".rjust(5) + "F1".rjust(8) + "accuracy".rjust(10) + "yes-ratio".rjust(11))
        for name, f in figures["settings"].items():
            lines.append("   " + name.ljust(12) + str(f["n"]).rjust(5) + pct(f["f1"]).rjust(8) + pct(f["accuracy"]).rjust(10) + pct(f["yes_ratio"]).rjust(11))
    else:
        lines.append("   " + "setting".ljust(12) + "n".rjust(5) + "F1 before -> after".rjust(22) + "accuracy".rjust(18) + "yes-ratio".rjust(18))
        for name, s in figures["settings"].items():
            a, b = s["a"], s["b"]
            row = f"{pct(a['f1'])} -> {pct(b['f1'])}".rjust(22) + f"{pct(a['accuracy'])} -> {pct(b['accuracy'])}".rjust(18)
            lines.append("   " + name.ljust(12) + str(s["n"]).rjust(5) + row + f"{pct(a['yes_ratio'])} -> {pct(b['yes_ratio'])}".rjust(18))
        lines += ["   " + verdict(name, s) for name, s in figures["settings"].items()]
    said = ", ".join(f"{pct(share)}% {run}" for run, share in shares.items())
    lines.append(f"   answers that are a yes or a no: {said}.")
    if max(shares.values()) < 0.5:
        lines.append(
            "   The model was taught the world's one-word answers, never yes or no: POPE's parser reads any other answer as yes,"
            " so the yes-ratio, not the F1, is the figure that tells (docs/eval.md)."
        )
    return lines

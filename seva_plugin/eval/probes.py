"""Probes from POPE's question files, from COCO instance annotations, or from a JSONL of objects per
image; and the records the backend is asked about: one per image, holding its distinct questions.

A bad row is a reject with its reason, as in builds; reading goes on. An image's questions are
asked together (its image is decoded once), and a question asked in several settings (POPE's three
files share their present objects) is answered once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from seva_plugin.errors import ConfigError, show
from seva_plugin.eval.sampling import AnnotatedImage, Probe, draw_images, sample_probes
from seva_plugin.pipeline.records import IMAGE_TOKEN, PromptRecord, Reject, with_image_markers

BAD_PROBE = "bad_probe"


@dataclass
class ProbeSet:
    probes: list[Probe] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)  # rows that are no probe, with their setting
    settings: list[str] = field(default_factory=list)
    suffix: str = ""

    def asked(self, probe: Probe) -> str:
        """The user turn a probe is asked as: its question (and the suffix) after the image marker."""
        return with_image_markers(probe.text + self.suffix, 1)

    def records(self) -> Iterator[PromptRecord]:
        """One record per image (in order of first appearance), its distinct questions in ``meta``."""
        questions: dict[str, list[str]] = {}
        paths: dict[str, str] = {}
        for p in self.probes:
            asked = questions.setdefault(p.image, [])
            paths.setdefault(p.image, p.path)
            if (q := self.asked(p)) not in asked:
                asked.append(q)
        for image, asked in questions.items():
            yield PromptRecord(image, asked[0], [paths[image]], {"questions": asked})


def load_probes(spec: dict[str, Any], seed: int) -> ProbeSet:
    fmt = spec["format"]
    if fmt == "pope":
        out = read_pope(spec["file"], spec["image_dir"])
    else:
        images, rejects = read_coco(spec["annotations"], spec["image_dir"]) if fmt == "coco" else read_objects(spec["file"], spec["image_dir"])
        drawn = draw_images(images, spec["num_images"], spec["objects_per_image"], seed)
        probes = sample_probes(drawn, spec["settings"], spec["objects_per_image"], spec["question"], seed)
        out = ProbeSet(probes, rejects, list(spec["settings"]))
    out.suffix = spec["suffix"]
    if not out.probes:
        reasons = "; ".join(r.reason for r in out.rejects[:3])
        raise ConfigError(f"no probes could be read from probes ({fmt})" + (f": {reasons}" if reasons else "."))
    return out


def _json_lines(path: str) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value or the JSONDecodeError)`` per non-empty line."""
    if not os.path.isfile(path):
        raise ConfigError(f"probes file not found: {path}")
    with open(path, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as exc:
                    yield n, exc


def read_pope(files: dict[str, str], image_dir: str | None) -> ProbeSet:
    """POPE's question files as published (``coco_pope_random.json`` and the others): one JSON object
    a line with ``question_id``, ``image``, ``text`` and ``label`` (yes or no)."""
    out = ProbeSet()
    seen: set[tuple[str, Any]] = set()
    for setting, path in files.items():
        folder = os.path.abspath(image_dir or os.path.dirname(path))
        for n, row in _json_lines(path):
            where = f"{os.path.basename(path)}:{n}"
            problem = _pope_row_problem(row)
            if problem:
                out.rejects.append(Reject(f"{setting}/{where}", f"{where} {problem}", BAD_PROBE))
                continue
            name = str(row.get("category", setting))
            key = (name, row["question_id"])
            if key in seen:
                reason = f"{where}: question_id {show(row['question_id'])} repeats in setting {name}"
                out.rejects.append(Reject(f"{name}/{row['question_id']}", reason, "duplicate_id"))
                continue
            seen.add(key)
            if name not in out.settings:
                out.settings.append(name)
            label = row["label"].strip().lower()
            out.probes.append(Probe(name, row["question_id"], row["image"], os.path.join(folder, row["image"]), row["text"].strip(), label))
    return out


def _pope_row_problem(row: Any) -> str | None:
    if isinstance(row, json.JSONDecodeError):
        return f"is not JSON ({row.msg})"
    if not isinstance(row, dict):
        return "is not a JSON object"
    missing = [k for k in ("question_id", "image", "text", "label") if k not in row]
    if missing:
        return f"has no {', '.join(missing)}"
    if not isinstance(row["question_id"], int | str) or isinstance(row["question_id"], bool):
        return f"question_id must be a number or a string, got {show(row['question_id'])}"
    for key in ("image", "text", "label"):
        if not isinstance(row[key], str) or not row[key].strip():
            return f"{key} must be a non-empty string, got {show(row[key])}"
    if IMAGE_TOKEN in row["text"]:
        return f"text holds an {IMAGE_TOKEN} marker: {show(row['text'])}"
    if row["label"].strip().lower() not in ("yes", "no"):
        return f"label must be yes or no, got {show(row['label'])}"
    if "category" in row and not (isinstance(row["category"], str) and row["category"]):
        return f"category must be a setting name, got {show(row['category'])}"
    return None


def read_objects(path: str, image_dir: str | None) -> tuple[list[AnnotatedImage], list[Reject]]:
    """A JSONL of ``{"image": ..., "objects": [...]}`` per line: the layout of POPE's own
    ``segmentation/coco_ground_truth_segmentation.json``."""
    folder = os.path.abspath(image_dir or os.path.dirname(path))
    images: list[AnnotatedImage] = []
    rejects: list[Reject] = []
    for n, row in _json_lines(path):
        where = f"{os.path.basename(path)}:{n}"
        problem = None
        if isinstance(row, json.JSONDecodeError):
            problem = f"is not JSON ({row.msg})"
        elif not isinstance(row, dict) or not isinstance(row.get("image"), str) or not row["image"]:
            problem = "must be an object with an image (a path)"
        elif not isinstance(row.get("objects"), list) or not all(isinstance(o, str) and o.strip() for o in row["objects"]):
            problem = f"objects must be a list of names, got {show(row.get('objects'))}"
        if problem:
            rejects.append(Reject(where, f"{where} {problem}", BAD_PROBE))
            continue
        objects = tuple(dict.fromkeys(o.strip() for o in row["objects"]))
        images.append(AnnotatedImage(row["image"], os.path.join(folder, row["image"]), objects))
    return images, rejects


def read_coco(annotations: str, image_dir: str) -> tuple[list[AnnotatedImage], list[Reject]]:
    """COCO instance annotations (``instances_val2014.json``): each image's category names, in the
    order its annotations come, each once. Images without annotations have no objects."""
    if not os.path.isfile(annotations):
        raise ConfigError(f"probes.annotations not found: {annotations}")
    try:
        with open(annotations, encoding="utf-8") as fh:
            data = json.load(fh)
        names = {c["id"]: c["name"] for c in data["categories"]}
        files = {im["id"]: im["file_name"] for im in data["images"]}
        objects: dict[Any, dict[str, None]] = {i: {} for i in files}
        for ann in data["annotations"]:
            objects[ann["image_id"]][names[ann["category_id"]]] = None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{annotations} is not COCO instance annotations (images, categories, annotations): {type(exc).__name__}: {exc}") from None
    folder = os.path.abspath(image_dir)
    return [AnnotatedImage(name, os.path.join(folder, name), tuple(objects[i])) for i, name in files.items()], []


def write_pope_files(probes: list[Probe], folder: str, prefix: str = "pope") -> dict[str, str]:
    """Probes as POPE question files, ``<prefix>_pope_<setting>.json`` per setting (how ``seva eval``'s
    pope format reads them back); returns ``{setting: path}``."""
    os.makedirs(folder, exist_ok=True)
    rows: dict[str, list[str]] = {}
    for p in probes:
        rows.setdefault(p.setting, []).append(json.dumps({"question_id": p.question_id, "image": p.image, "text": p.text, "label": p.label}) + "\n")
    paths = {setting: os.path.join(folder, f"{prefix}_pope_{setting}.json") for setting in rows}
    for setting, lines in rows.items():
        with open(paths[setting], "w", encoding="utf-8") as fh:
            fh.writelines(lines)
    return paths

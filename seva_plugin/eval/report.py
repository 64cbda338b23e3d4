"""What a run writes: ``predictions.jsonl`` (one line a probe, in probe order), ``report.json`` (per
setting the figures, their confusion counts and 95% bootstrap intervals), ``rejects.jsonl`` and
``run.json`` (timings: the one file that differs between two runs); and the Markdown table.

``report.json`` and ``predictions.jsonl`` depend only on the config and the answers, so two runs of
one config give the same bytes, and every figure can be recounted from the predictions.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

from seva_plugin.eval.answers import parse_yes_no
from seva_plugin.eval.probes import ProbeSet
from seva_plugin.eval.stats import METRICS, bootstrap, confusion, metrics
from seva_plugin.pipeline.files import atomic_write_json, atomic_write_lines

NAMES = {"accuracy": "accuracy", "precision": "precision", "recall": "recall", "f1": "F1", "yes_ratio": "yes-ratio"}


def predictions(probes: ProbeSet, answers: dict[tuple[str, str], dict[str, Any]], image_rejects: dict[str, dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """``(rows, rejects)``: a prediction per answered probe, in probe order; the rows that were no
    probe and the images that could not be asked about, with their reasons and lost probes."""
    rows: list[dict[str, Any]] = []
    lost: Counter[str] = Counter()
    for p in probes.probes:
        answer = answers.get((p.image, probes.asked(p)))
        if answer is None:
            lost[p.image] += 1
            continue
        logprob = "logprob_yes" in answer
        prediction = ("yes" if answer["answer"] == "Yes" else "no") if logprob else parse_yes_no(answer["answer"])
        row = {"question_id": p.question_id, "setting": p.setting, "image": p.image, "question": p.text, "label": p.label}
        row.update({"answer": answer["answer"], "prediction": prediction})
        if logprob:
            row.update({"logprob_yes": answer["logprob_yes"], "logprob_no": answer["logprob_no"]})
        rows.append(row)
    rejects = [{"id": r.id, "reason": r.reason, "code": r.code, "probes": 1} for r in probes.rejects]
    for image, count in lost.items():
        e = image_rejects.get(image, {"reason": "not answered (the run stopped before this image)", "code": "unanswered"})
        rejects.append({"id": image, "reason": e["reason"], "code": e["code"], "probes": count})
    return rows, rejects


def setting_figures(name: str, rows: list[dict[str, Any]], resamples: int, seed: int) -> dict[str, Any]:
    """Figures of one setting's predictions: metrics, confusion counts, 95% intervals."""
    labels = [r["label"] == "yes" for r in rows]
    preds = [r["prediction"] == "yes" for r in rows]
    counts = confusion(labels, preds)
    return {**metrics(**counts), **counts, "ci95": bootstrap(name, labels, preds, resamples, seed)}


def report_json(config: Any, probes: ProbeSet, rows: list[dict], rejects: list[dict], engine: dict[str, Any]) -> dict[str, Any]:
    by_setting: dict[str, list[dict]] = {s: [] for s in probes.settings}
    for r in rows:
        by_setting.setdefault(r["setting"], []).append(r)
    rejected: Counter[str] = Counter()
    for r in rejects:
        rejected[r["code"]] += r["probes"]
    return {
        "model": config.model,
        "adapter": config.adapter,
        "template": config.template,
        "scoring": config.scoring,
        "probes": config.probes,
        "seed": config.seed,
        "bootstrap": {"resamples": config.bootstrap, "interval": "95% percentile"},
        "engine": engine,
        "settings": {s: setting_figures(s, rs, config.bootstrap, config.seed) for s, rs in by_setting.items() if rs},
        "rejected_probes": dict(sorted(rejected.items())),
    }


def write_outputs(out_dir: str, report: dict, rows: list[dict], rejects: list[dict], run: dict) -> None:
    def line(obj: dict) -> str:
        return json.dumps(obj, ensure_ascii=False) + "\n"

    atomic_write_lines(os.path.join(out_dir, "predictions.jsonl"), (line(r) for r in rows))
    atomic_write_lines(os.path.join(out_dir, "rejects.jsonl"), (line(r) for r in rejects))
    atomic_write_json(os.path.join(out_dir, "report.json"), report)
    atomic_write_json(os.path.join(out_dir, "run.json"), run)


def read_predictions(folder: str) -> list[dict[str, Any]]:
    with open(os.path.join(folder, "predictions.jsonl"), encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


# -- the table ----------------------------------------------------------------------------------
def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def cell(figures: dict[str, Any], metric: str) -> str:
    ci = figures.get("ci95", {}).get(metric)
    return pct(figures[metric]) + (f" [{pct(ci[0])}, {pct(ci[1])}]" if ci else "")


def table(report: dict[str, Any]) -> str:
    """Per setting: n and each figure in percent with its 95% interval."""
    lines = ["| setting | n | " + " | ".join(NAMES[m] for m in METRICS) + " |", "|---|---:|" + "---:|" * len(METRICS)]
    for name, f in report["settings"].items():
        lines.append(f"| {name} | {f['n']} | " + " | ".join(cell(f, m) for m in METRICS) + " |")
    resamples = report["bootstrap"]["resamples"]
    notes = [f"{report['scoring']} scoring; figures in percent" + (f", [95% bootstrap interval] over {resamples} resamples." if resamples else ".")]
    if report["rejected_probes"]:
        notes.append("Left out: " + ", ".join(f"{n} probes ({code})" for code, n in report["rejected_probes"].items()) + "; see rejects.jsonl.")
    return "\n".join(lines + [""] + notes)

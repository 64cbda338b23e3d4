"""Asking a model the world's questions through the ``hf`` backend, so generation uses the
same template, image processing and seeded augmenters as the SeVa build."""

from __future__ import annotations

from seva_plugin.pipeline.records import IMAGE_TOKEN, LoadedRecord, PromptRecord
from seva_plugin.pipeline.views import record_seed


def loaded_records(examples, seed: int) -> list[LoadedRecord]:
    from seva_plugin.pipeline.images import load_rgb

    images = {}  # each image is asked several questions: decode it once
    out = []
    for ex in examples:
        if ex.image not in images:
            images[ex.image] = load_rgb(ex.image)
        out.append(LoadedRecord(PromptRecord(ex.id, IMAGE_TOKEN + ex.question, [ex.image]), [images[ex.image]], record_seed(seed, ex.id)))
    return out


def answers(backend, examples, views: list, seed: int, desc: str = "", batch_size: int = 64) -> list[list[str]]:
    """``answers[v][i]``: the greedy answer to ``examples[i]`` under ``views[v]`` (``View`` objects).

    Each record's noise comes from its per-record seed and the view's id, as in the pipeline, so
    the same ``View`` gives the same noise before and after training, and an evaluation at the
    build's noise step with view id 1 sees exactly the views the build saw.
    """
    from tqdm.auto import tqdm

    from seva_plugin.interfaces import GenerationRequest

    records = loaded_records(examples, seed)
    out: list[list[str]] = [[] for _ in views]
    with tqdm(total=len(records), desc=desc, unit="question", leave=False, disable=not desc) as bar:
        for i in range(0, len(records), batch_size):
            chunk = records[i : i + batch_size]
            got = backend.generate([GenerationRequest(r, view) for view in views for r in chunk])
            for v in range(len(views)):
                out[v] += [a[0].text.strip() for a in got[v * len(chunk) : (v + 1) * len(chunk)]]
            bar.update(len(chunk))
    return out

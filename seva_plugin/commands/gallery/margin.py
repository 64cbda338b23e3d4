"""``seva inspect --score``: each shown pair's log-probability margin under the model that built it.

``margin`` is log p(chosen) - log p(rejected), each answer scored teacher-forced under the clean
view with the prompt the pair trains on (``Backend.score``, the contract's scoring), by the build's
own backend and model; ``margin_per_token`` is the same with each side's mean token log-probability.
It is DPO's implicit reward margin before training (the reference model is the model that built the
pairs), and it means the same for every strategy: a SeVa pair where the model already prefers the
rejected answer, or barely tells them apart, is one to look at.

Scored here, when asked, rather than at build time: the build's outputs and fingerprint stay as
they are, any finished build can be scored (older ones, exported copies), and the cost (one
forward pass per answer) is paid only for the pairs someone looks at.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from seva_plugin.commands.gallery.data import Item
from seva_plugin.contract import CLEAN, ScoreRequest
from seva_plugin.errors import ConfigError, RecordError, short
from seva_plugin.pipeline.records import LoadedRecord, PromptRecord


def backend_of(config: dict[str, Any]) -> Any:
    """The build's backend, as its config made it (no model loads until it scores)."""
    from seva_plugin.pipeline.config import split_spec
    from seva_plugin.registry import get_registry

    name, params = split_spec(config.get("backend", "hf"), "backend", default="hf")
    backend = get_registry().get("backend", name).build(params, "backend", model=config["model"], template=config["template"])
    if not backend.can_score():
        raise ConfigError(f"--score needs a backend that scores texts (Backend.score); the build's backend '{name}' does not. Rerun without --score.")
    return backend


def score_margins(items: list[Item], config: dict[str, Any], images_of: Callable[[Item], list[Any]], backend: Any = None) -> list[str]:
    """Add ``margin`` and ``margin_per_token`` to each item's computed scores; returns a line for each
    pair that could not be scored (an empty answer, an image gone, a prompt too long)."""
    own = backend is None
    backend = backend_of(config) if own else backend
    problems: list[str] = []
    try:
        step = max(1, int(getattr(backend, "batch_size", 8)))
        for start in range(0, len(items), step):
            chunk = []
            for item in items[start : start + step]:
                if not all(item.pair[side] for side in ("chosen", "rejected")):
                    problems.append(f"{item.id}: an empty answer has no log-probability")
                    continue
                try:
                    images = images_of(item)
                except (OSError, RecordError) as exc:
                    problems.append(f"{item.id}: {short(exc, 200)}")
                    continue
                seed = (item.pair.get("provenance") or {}).get("seed") or 0
                chunk.append((item, LoadedRecord(PromptRecord(item.id, item.pair["prompt"], []), images, int(seed))))
            problems += _score(backend, chunk)
    finally:
        if own:
            backend.close()
    return problems


def _score(backend: Any, chunk: list[tuple[Item, LoadedRecord]]) -> list[str]:
    """Score a chunk together; where that fails, pair by pair, so one bad pair costs only itself."""
    requests = [ScoreRequest(loaded, CLEAN, item.pair[side]) for item, loaded in chunk for side in ("chosen", "rejected")]
    try:
        scores = backend.score(requests) if requests else []
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - narrowed down to the pair below
        if len(chunk) == 1:
            return [f"{chunk[0][0].id}: {type(exc).__name__}: {short(exc, 200)}"]
        return [problem for one in chunk for problem in _score(backend, [one])]
    for k, (item, _) in enumerate(chunk):
        chosen, rejected = scores[2 * k], scores[2 * k + 1]
        item.computed["margin"] = chosen.total - rejected.total
        mean = [s.total / len(s.logprobs) if s.logprobs else 0.0 for s in (chosen, rejected)]
        item.computed["margin_per_token"] = mean[0] - mean[1]
    return []

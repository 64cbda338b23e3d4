"""What ``seva inspect`` reads of a build: its pairs (kept ones from the data, in any layout the
writers write; dropped ones, with their answers, from the journal), a seeded sample of them, why
each answer ended (noted by the build in the journal), their scores, and the summary's figures.

The data and the journal are read as streams, so a large build costs the memory of its sample.
"""

from __future__ import annotations

import math
import os
import random
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from seva_plugin.errors import ConfigError
from seva_plugin.pipeline.dataset_files import DatasetFiles
from seva_plugin.pipeline.records import Reject

SIDES = ("chosen", "rejected")


@dataclass
class Item:
    """One pair on the page: kept (in the data) or dropped by a filter (from the journal)."""

    pair: dict[str, Any]  # id, prompt, chosen, rejected, images; provenance, scores, meta when present
    position: int  # its place in source order (the journal's, else the data's)
    status: str = "kept"  # or the filter's reason to drop it
    finish: dict[str, str] = field(default_factory=dict)  # side -> why it ended (eos, stop, length), where the build noted it
    computed: dict[str, float] = field(default_factory=dict)  # scores computed by seva inspect (--score)

    @property
    def id(self) -> str:
        return str(self.pair["id"])

    @property
    def truncated(self) -> list[str]:
        """The sides that ended at ``max_new_tokens``."""
        return [side for side in SIDES if self.finish.get(side) == "length"]

    def scores(self) -> dict[str, float]:
        """Every number to sort and filter by: the pair's own scores (``flat_scores``), then those computed here."""
        return {**flat_scores(self.pair.get("scores")), **self.computed}


@dataclass
class Inspected:
    name: str
    data_dir: str
    manifest: dict[str, Any]
    items: list[Item]  # the pairs shown, in source order
    pool: int  # the kept pairs and dropped pairs with answers the sample was drawn from
    words: dict[str, list[int]]  # per side, the word counts of every kept pair
    journal: Counter[str] = field(default_factory=Counter)  # the journal's tally: drop:REASON, generated, identical, noted, truncated:SIDE
    unreadable: int = 0  # records of the data that cannot be read back


def flat_scores(scores: Any, prefix: str = "") -> dict[str, float]:
    """The numbers in a strategy's ``Pair.scores``, whatever their shape, under dotted keys
    (``chosen.reward``), plus ``Δ KEY``: chosen less rejected, for each number both sides have
    (``Δ reward``; ``Δ`` alone when ``chosen`` and ``rejected`` are numbers themselves)."""
    out: dict[str, float] = {}
    if isinstance(scores, dict):
        for key, value in scores.items():
            out.update(flat_scores(value, f"{prefix}{key}."))
    elif isinstance(scores, int | float) and not isinstance(scores, bool) and math.isfinite(scores):
        out[prefix[:-1]] = float(scores)
    if not prefix:
        for key in list(out):
            if key == "chosen" or key.startswith("chosen."):
                other = "rejected" + key[len("chosen") :]
                if other in out:
                    out[("Δ " + key[len("chosen.") :]).rstrip()] = out[key] - out[other]
    return out


def _journal_pair(entry: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "prompt", "chosen", "rejected", "images", "provenance", "scores", "meta")
    return {k: entry[k] for k in keys if k in entry}


def load(data_dir: str, name: str, sample: int | None = None, seed: int = 0) -> Inspected:
    """The build's pairs, a seeded random ``sample`` of them (``None``: all), in source order."""
    from seva_plugin.plugins.writers.readback import count_records, data_location, iter_pairs, layout_of

    files = DatasetFiles(data_dir, name)
    manifest = files.read_manifest()
    layout = layout_of(manifest) if manifest else "jsonl"
    location = data_location(files.dataset_dir, name, layout)
    kept = count_records(location, layout)
    if kept is None:
        raise ConfigError(f"no dataset '{name}' in {data_dir}: {location} not found.")

    # pass 1 over the journal: where each kept pair sits and why its answers ended; the drops with answers
    tally: Counter[str] = Counter()
    placed: dict[tuple[str, int], tuple[int, dict[str, str]]] = {}
    occurrences: Counter[str] = Counter()
    drops: list[int] = []
    for position, entry in enumerate(files.journal_entries()):
        if entry.get("kind") == "drop":
            tally[f"drop:{entry.get('reason')}"] += 1
        if entry.get("kind") not in ("pair", "drop") or "chosen" not in entry:
            continue
        tally["generated"] += 1
        if entry["kind"] == "drop":
            tally["identical"] += entry.get("reason") == "identical"
            drops.append(position)
        else:
            finish = entry.get("finish") or {}
            placed[str(entry["id"]), occurrences[str(entry["id"])]] = position, finish
            occurrences[str(entry["id"])] += 1
            tally["noted"] += bool(finish)
            tally.update(f"truncated:{side}" for side in SIDES if finish.get(side) == "length")

    pool = kept + len(drops)
    picked = set(range(pool)) if sample is None or sample >= pool else set(random.Random(seed).sample(range(pool), max(0, sample)))
    items: list[Item] = []
    words: dict[str, list[int]] = {side: [] for side in SIDES}
    unreadable = 0
    occurrences.clear()
    for index, pair in enumerate(iter_pairs(files.dataset_dir, name, layout)):
        if isinstance(pair, Reject):
            unreadable += 1
            continue
        for side in SIDES:
            words[side].append(len(pair[side].split()))
        key = (str(pair["id"]), occurrences[str(pair["id"])])
        occurrences[key[0]] += 1
        if index in picked:
            position, finish = placed.get(key, (index, {}))
            items.append(Item(pair, position, finish=dict(finish)))

    wanted = {position for k, position in enumerate(drops) if kept + k in picked}
    if wanted:  # pass 2: the sampled drops' answers
        for position, entry in enumerate(files.journal_entries()):
            if position in wanted:
                items.append(Item(_journal_pair(entry), position, str(entry.get("reason")), dict(entry.get("finish") or {})))
    items.sort(key=lambda item: item.position)
    return Inspected(name, files.dataset_dir, manifest, items, pool, words, tally, unreadable)


def open_images(pair: dict[str, Any], data_dir: str) -> list[Any]:
    """A pair's images as RGB: a path by LLaMA-Factory's rule (relative paths joined to the dataset
    dir, its media_dir, when that exists), or an embedded image (``{"bytes", "path"}``)."""
    import io

    from PIL import Image

    from seva_plugin.pipeline.images import load_rgb

    out = []
    for p in pair.get("images") or []:
        if isinstance(p, dict):
            out.append(Image.open(io.BytesIO(p["bytes"])).convert("RGB"))
            continue
        joined = os.path.join(data_dir, p)
        out.append(load_rgb(os.path.abspath(joined if not os.path.isabs(p) and os.path.exists(joined) else p)))
    return out


# -- the summary ---------------------------------------------------------------------------------
def summarise(seen: Inspected) -> dict[str, Any]:
    counts = seen.manifest.get("counts", {})
    journal_drops = {k[len("drop:") :]: v for k, v in seen.journal.items() if k.startswith("drop:")}
    dropped = counts.get("dropped") or journal_drops
    generated, identical = seen.journal["generated"], seen.journal["identical"]
    if not generated:  # no journal: fall back on the manifest's counts (a no_pair record generated no pair)
        identical = dropped.get("identical", 0)
        generated = len(seen.words["chosen"]) + sum(v for k, v in dropped.items() if k != "no_pair")

    def lengths(words: list[int]) -> dict[str, float]:
        return {"mean": statistics.fmean(words), "median": statistics.median(words), "max": max(words)} if words else {}

    return {
        "pairs": len(seen.words["chosen"]),
        "dropped": dropped,
        "rejected": counts.get("rejected", {}),
        "generated": generated,
        "identical_rate": identical / generated if generated else 0.0,
        "truncated": {side: seen.journal[f"truncated:{side}"] for side in SIDES} if seen.journal["noted"] else None,
        "chosen_words": lengths(seen.words["chosen"]),
        "rejected_words": lengths(seen.words["rejected"]),
    }


def format_summary(name: str, s: dict[str, Any], manifest: dict[str, Any]) -> str:
    cfg = manifest.get("config", {})

    def counts(d: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"

    def words(d: dict[str, float]) -> str:
        return f"mean {d['mean']:.1f}, median {d['median']:g}, max {d['max']}" if d else "-"

    lines = [f"dataset {name}: {s['pairs']} pairs"]
    if cfg:
        strategy = cfg.get("strategy", "seva")
        never = f"no augmenter ({spec_text(strategy).split(' ')[0]} never applies one)"
        augment = f"augment {spec_text(cfg.get('augment'))}" if uses_augmenter(strategy) else never
        lines.append(f"  model {cfg.get('model')} (template {cfg.get('template')}), strategy {spec_text(strategy)}, {augment}")
    lines += [
        f"  dropped: {counts(s['dropped'])}",
        f"  rejected inputs: {counts(s['rejected'])}",
        f"  identical rate: {100 * s['identical_rate']:.1f}% of {s['generated']} generated pairs",
        f"  answer length in words: chosen {words(s['chosen_words'])}; rejected {words(s['rejected_words'])}",
    ]
    cut = s["truncated"]
    lines.append(
        f"  cut at max_new_tokens: chosen {cut['chosen']}, rejected {cut['rejected']} of {s['pairs']} pairs"
        if cut is not None
        else "  cut at max_new_tokens: not recorded by this build"
    )
    return "\n".join(lines)


def uses_augmenter(strategy: Any) -> bool:
    """Whether a build's strategy applies its augmenter (CSR does not); unknown strategies are taken to."""
    from seva_plugin.errors import SevaError
    from seva_plugin.pipeline.config import split_spec
    from seva_plugin.registry import get_registry

    try:
        name, _ = split_spec(strategy, "strategy", default="seva")
        return bool(get_registry().get("strategy", name).cls.uses_augmenter)
    except SevaError:
        return True


def spec_text(spec: Any) -> str:
    if isinstance(spec, dict):
        params = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "name")
        return f"{spec.get('name')}" + (f" ({params})" if params else "")
    return str(spec)

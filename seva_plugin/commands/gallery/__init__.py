"""``seva inspect``: a terminal summary of a built dataset and a self-contained HTML gallery to curate it.

The gallery shows a seeded random sample of the build's pairs (or all of them, a page at a time):
kept pairs and the pairs its filters dropped, each with its images under every view its strategy
planned, rebuilt as the model saw them (``views.py``), the prompt the pair trains on and any other
prompt the strategy asked, rendered by the build's template, and chosen and rejected side by side
with their word-level differences marked. Answers cut at ``max_new_tokens`` are flagged (the build
notes why each answer ended); every number a strategy put in ``Pair.scores`` is shown and can be
sorted and filtered by, and ``--score`` adds the log-probability margin under the build's model
(``margin.py``). Pairs marked in the page download as a list of ids that ``seva export --exclude``
leaves out.

- ``data.py``: the pairs, the sample, the summary;
- ``views.py``: the views and the rendered prompts (strategy, rendering API, pixels);
- ``margin.py``: ``--score``;
- ``page.py`` (with ``page.css`` and ``page.js``): the HTML.
"""

from __future__ import annotations

import os

from seva_plugin.commands.gallery.data import Inspected, Item, format_summary, load, open_images, summarise
from seva_plugin.commands.gallery.views import Asked, Shown, ViewMaker
from seva_plugin.errors import ConfigError, RecordError, short

__all__ = ["Inspected", "Item", "ViewMaker", "inspect_dataset", "load", "open_images"]

DEFAULT_SAMPLE = 200


def inspect_dataset(data_dir: str, name: str, html: str | None = None, sample: int | None = DEFAULT_SAMPLE, seed: int = 0, score: bool = False) -> str:
    """The terminal summary; with ``html``, also write the gallery of a seeded random ``sample`` of the
    pairs (``None``: all of them), with ``score`` their log-probability margins."""
    if sample is not None and sample < 0:
        raise ConfigError(f"--sample must be a number of pairs (0 or more), got {sample}.")
    if score and not html:
        raise ConfigError("--score scores the pairs the gallery shows: add --html FILE.")
    seen = load(data_dir, name, sample if html else 0, seed)
    text = format_summary(name, summarise(seen), seen.manifest)
    if seen.unreadable:
        text += f"\n  records of the data that cannot be read back: {seen.unreadable}"
    if not html:
        return text
    notes = _gallery(html, seen, text, score, seed)
    shown = len(seen.items)
    which = "all" if shown == seen.pool else f"a sample (seed {seed}) of {seen.pool}"
    return "\n".join([text, *notes, f"gallery: {os.path.abspath(html)} ({shown} pairs: {which} kept and dropped pairs)"])


def _gallery(html: str, seen: Inspected, text: str, score: bool, seed: int) -> list[str]:
    from tqdm.auto import tqdm

    from seva_plugin.commands.gallery.page import render_item, write_page

    config = seen.manifest.get("config") or {}
    notes = []
    if score:
        from seva_plugin.commands.gallery.margin import score_margins

        if not config:
            raise ConfigError(f"--score needs the build's manifest (its model and backend): no {seen.name}.manifest.json in {seen.data_dir}.")
        problems = score_margins(seen.items, config, lambda item: open_images(item.pair, seen.data_dir))
        if problems:
            notes.append(f"  not scored: {len(problems)} pair(s), e.g. {problems[0]}")
    maker = ViewMaker(config) if config.get("model") and config.get("augment") else None
    if maker is not None and maker.note:
        notes.append(f"  views: {maker.note}")
    sections = []
    for n, item in enumerate(tqdm(seen.items, desc="gallery", unit="pair", disable=len(seen.items) < 50), 1):
        try:
            images = open_images(item.pair, seen.data_dir)
        except (OSError, RecordError) as exc:
            sections.append(render_item(n, item, [], [], f"image not readable: {short(exc, 160)}"))
            continue
        shown: list[Shown] = [Shown(0, "image", images)]
        asked: list[Asked] = []
        if maker is not None:
            try:
                shown, asked = maker.views(item.pair, images)
            except ConfigError:
                raise
            except Exception as exc:  # noqa: BLE001 - one pair's views; the page goes on with its images as they are
                shown = [Shown(0, f"image (its views could not be rebuilt: {short(exc, 160)})", images)]
        sections.append(render_item(n, item, shown, asked))
    if len(seen.items) == seen.pool:
        what = f"All {seen.pool} pairs (kept, and dropped with their answers)."
    else:
        what = f"A random sample (seed {seed}) of {len(seen.items)} of the {seen.pool} pairs (kept, and dropped with their answers); --all shows every one."
    write_page(html, seen, sections, "\n".join([text, *notes]), what)
    return notes

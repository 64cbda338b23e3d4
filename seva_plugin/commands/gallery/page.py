"""The gallery page: one self-contained HTML file. Images are PNG data URIs; the style and the small
script (``page.css``, ``page.js`` beside this module) are inlined; nothing is fetched.

Each pair is a ``<section class="pair">`` whose ``data-*`` attributes carry what the script sorts
and filters by (``data-values``: every score and the answers' word counts). Kept pairs have a
checkbox; the marked ones download as ``NAME.exclude.json`` for ``seva export --exclude``.
"""

from __future__ import annotations

import base64
import difflib
import html as H
import io
import json
import os
from collections import Counter
from collections.abc import Iterable
from typing import Any

from seva_plugin.commands.gallery.data import SIDES, Inspected, Item, flat_scores
from seva_plugin.commands.gallery.views import Asked, Shown
from seva_plugin.pipeline.records import IMAGE_TOKEN

PAGE_SIZE = 50
COMPUTED = ("margin", "margin_per_token")  # seva inspect --score (margin.py), listed first


def data_uri(image: Any, size: int = 192) -> str:
    """A PNG data URI, scaled up with nearest-neighbour so small images stay crisp."""
    from PIL import Image

    scale = max(1, size // max(image.size))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def word_diff(a: str, b: str) -> tuple[str, str]:
    """HTML for ``a`` and ``b`` with the words that differ wrapped in <mark>."""
    wa, wb = a.split(), b.split()
    out_a, out_b = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, wa, wb, autojunk=False).get_opcodes():
        sa, sb = H.escape(" ".join(wa[i1:i2])), H.escape(" ".join(wb[j1:j2]))
        if op == "equal":
            out_a.append(sa)
            out_b.append(sb)
        else:
            if sa:
                out_a.append(f'<mark class="del">{sa}</mark>')
            if sb:
                out_b.append(f'<mark class="ins">{sb}</mark>')
    return " ".join(out_a), " ".join(out_b)


def _number(value: float) -> str:
    return f"{value:.4g}"


def _side_scores(scores: Any, side: str) -> str:
    """A side's own scores (CSR: reward, language, visual, sentences; a bare number: score)."""
    mine = scores.get(side) if isinstance(scores, dict) else None
    if isinstance(mine, int | float) and not isinstance(mine, bool):
        mine = {"score": mine}
    shown = [f"{k.replace('_', ' ')} {_number(v)}" for k, v in flat_scores(mine).items()] if isinstance(mine, dict) else []
    line = f'<span class="meta scores">{H.escape(" · ".join(shown))}</span><br>' if shown else ""
    return line + (_side_table(mine) if isinstance(mine, dict) else "")


def _cell(value: Any) -> str:
    return _number(value) if isinstance(value, float) else H.escape(str(value))


def _side_table(scores: dict[str, Any]) -> str:
    """A side's parallel lists as one table, a row per item (RLAIF-V: each claim, its probe question,
    the labeler's P(yes) and P(no), accepted): why one answer won, in the strategy's own words."""
    lists = {k: v for k, v in scores.items() if isinstance(v, list) and v and all(isinstance(x, str | int | float) for x in v)}
    longest = max((len(v) for v in lists.values()), default=0)
    columns = {k: v for k, v in lists.items() if len(v) == longest}
    if not columns:
        return ""
    head = "".join(f"<th>{H.escape(k.replace('_', ' '))}</th>" for k in columns)
    rows = "".join("<tr>" + "".join(f"<td>{_cell(v[i])}</td>" for v in columns.values()) + "</tr>" for i in range(longest))
    what = next(iter(columns)).replace("_", " ")
    return f'<details class="why"><summary>{longest} {H.escape(what)}</summary><table><tr>{head}</tr>{rows}</table></details>'


def _pair_scores(item: Item) -> str:
    """The rest of the pair's scores (strategy-wide numbers and words, the Δs) and those computed here."""
    scores = item.pair.get("scores")
    parts = [f"{k} {H.escape(str(v))}" for k, v in scores.items() if isinstance(v, str)] if isinstance(scores, dict) else []
    parts += [f"{H.escape(k)} {_number(v)}" for k, v in item.scores().items() if not k.startswith(SIDES) and k not in SIDES]
    return f'<div class="meta scores">{" · ".join(parts)}</div>' if parts else ""


def _figures(shown: list[Shown], problem: str) -> str:
    if problem:
        return f'<figure><div class="missing">{H.escape(problem)}</div><figcaption>image</figcaption></figure>'
    figs = []
    for view in shown:
        for k, img in enumerate(view.images):
            alt = f"{view.label}, image {k}"
            figs.append(f'<figure><img alt="{H.escape(alt)}" src="{data_uri(img)}"><figcaption>{H.escape(view.label)}</figcaption></figure>')
    return "".join(figs)


def render_item(n: int, item: Item, shown: list[Shown], asked: list[Asked], problem: str = "") -> str:
    """One pair's section: its views, its prompt, the prompts its strategy asked, both answers with
    their differences marked, its scores, and (kept pairs) the box that marks it for exclusion."""
    pair = item.pair
    a, b = word_diff(pair["chosen"], pair["rejected"])
    values = {**item.scores(), **{f"{side} words": len(pair[side].split()) for side in SIDES}}
    kept = item.status == "kept"
    badges = '<span class="badge">kept</span>' if kept else f'<span class="badge drop">dropped: {H.escape(item.status)}</span>'
    if item.truncated:
        ended = ", ".join(f"{k} {v}" for k, v in sorted(item.finish.items()))
        badges += f' <span class="badge cut" title="why each answer ended: {H.escape(ended)}">cut at max_new_tokens: {", ".join(item.truncated)}</span>'
    mark = '<label class="mark"><input type="checkbox" class="exclude"> exclude</label> &middot; ' if kept else ""
    seed = (pair.get("provenance") or {}).get("seed", "-")
    question = pair["prompt"].replace(IMAGE_TOKEN, "").strip()
    prompts = "".join(
        f"<details class=asked><summary>the prompt asked ({H.escape(x.label)}), as rendered</summary><pre>{H.escape(x.text)}</pre></details>" for x in asked
    )
    attrs = {
        "id": f"pair-{n}",
        "data-id": item.id,
        "data-status": item.status,
        "data-position": str(item.position),
        "data-truncated": " ".join(item.truncated),
        "data-values": json.dumps(values, sort_keys=True),
    }
    head = " ".join(f'{k}="{H.escape(v, quote=True)}"' for k, v in attrs.items())
    return (
        f'<section class="pair{"" if kept else " dropped"}" {head}><div class="imgs">{_figures(shown, problem)}</div><div>'
        f'<div class="meta">{mark}#{n} &middot; id {H.escape(item.id)} &middot; seed {H.escape(str(seed))} &middot; {badges}</div>'
        f'<div class="q">{H.escape(question)}</div>{prompts}{_pair_scores(item)}'
        f'<div class="answers"><div class="chosen"><span class="label">chosen</span>{_side_scores(pair.get("scores"), "chosen")}{a}</div>'
        f'<div class="rejected"><span class="label">rejected</span>{_side_scores(pair.get("scores"), "rejected")}{b}</div></div></div></section>'
    )


def _options(pairs: Iterable[tuple[str, str]], selected: str = "") -> str:
    return "".join(f'<option value="{H.escape(v, quote=True)}"{" selected" if v == selected else ""}>{H.escape(t)}</option>' for v, t in pairs)


def controls(items: list[Item]) -> str:
    """Sorting, filtering, paging and marking, with the scores and drop reasons these pairs have."""
    keys = sorted({k for item in items for k in item.scores()}, key=lambda k: (k not in COMPUTED, COMPUTED.index(k) if k in COMPUTED else 0, k))
    statuses = Counter(item.status for item in items)
    sort = [("position", "source order"), *((k, k) for k in keys), *((f"{s} words", f"{s} words") for s in SIDES)]
    status = [("", "all"), *((s, ("kept" if s == "kept" else f"dropped: {s}") + f" ({n})") for s, n in sorted(statuses.items(), key=lambda x: x[0] != "kept"))]
    return (
        '<form id="controls" onsubmit="return false">'
        f'<label>sort by <select id="sort">{_options(sort)}</select></label> <button type="button" id="order">ascending</button>'
        f'<label>show <select id="status">{_options(status)}</select></label>'
        '<label><input type="checkbox" id="truncated"> cut at max_new_tokens only</label>'
        f'<label>where <select id="where-key">{_options([("", "(any score)"), *((k, k) for k in keys)])}</select></label>'
        f'<select id="where-op" aria-label="bound">{_options([("min", "at least"), ("max", "at most")])}</select>'
        '<input id="where-value" type="number" step="any" aria-label="value">'
        '<span id="count"></span>'
        '<span><button type="button" id="prev">previous</button> <span id="page"></span> <button type="button" id="next">next</button></span>'
        '<span><b id="marked">0</b> marked <button type="button" id="download">download exclusion list</button> '
        '<button type="button" id="clear">clear marks</button></span></form>'
    )


def _no_scores(items: list[Item]) -> str:
    if any(item.scores() for item in items):
        return ""
    return " These pairs carry no scores: <code>seva inspect --score</code> adds each one's log-prob margin under the build's model."


def _asset(name: str) -> str:
    with open(os.path.join(os.path.dirname(__file__), name), encoding="utf-8") as fh:
        return fh.read()


def write_page(path: str, seen: Inspected, sections: list[str], summary_text: str, what: str) -> None:
    """Write the page of ``sections`` (``render_item``) to ``path``; ``what`` says which pairs they are."""
    info = {"dataset": seen.name, "fingerprint": seen.manifest.get("fingerprint", ""), "page_size": PAGE_SIZE}
    info_json = json.dumps(info).replace("</", "<\\/")
    name = H.escape(seen.name)
    # an empty icon: else the browser asks for /favicon.ico, the page's only request
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>seva inspect: {name}</title><link rel="icon" href="data:,">'
        f"<style>{_asset('page.css')}</style></head>"
        f'<body><h1>seva inspect: {name}</h1><pre class="summary">{H.escape(summary_text)}</pre>'
        f"<p>{H.escape(what)}{_no_scores(seen.items)} Words that differ are marked: "
        '<mark class="del">only in chosen</mark> <mark class="ins">only in rejected</mark>. Mark the kept pairs to leave out, download the '
        f"list, and give it to <code>seva export {H.escape(seen.data_dir)} --name {name} --exclude FILE</code>.</p>"
        f'{controls(seen.items)}<div id="pairs">{"".join(sections)}</div>'
        f'<script type="application/json" id="gallery-info">{info_json}</script><script>{_asset("page.js")}</script></body></html>'
    )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(page)

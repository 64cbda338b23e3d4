"""``seva inspect``: a terminal summary of a built dataset and a self-contained HTML gallery.

The gallery shows, for each pair, the clean image and the augmented view the model saw,
rebuilt from the manifest's config and the record's seed exactly as the backend built it
(after the processor's resize and crop; pixels de-normalised for display), the question, and chosen and
rejected side by side with their word-level differences marked. Only the processor is
loaded, never the model weights.
"""

from __future__ import annotations

import base64
import difflib
import html as H
import io
import json
import os
import statistics
from collections import Counter

from seva_plugin.errors import ConfigError
from seva_plugin.pipeline.dataset_files import DatasetFiles
from seva_plugin.pipeline.records import IMAGE_TOKEN

# Backend keys that shape what the model sees (LLaMA-Factory's own keys); the views are rebuilt with them.
INPUT_KEYS = ("image_max_pixels", "crop_to_patches", "image_do_pan_and_scan", "enable_thinking")


# -- reading ------------------------------------------------------------------------------
def _read_jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_dataset(data_dir: str, name: str) -> tuple[list[dict], dict, list[dict]]:
    """(records in sharegpt form, manifest, journal entries) of a build in any layout the writers
    write (JSONL, Parquet, TRL); the manifest and journal may be missing ({} / [])."""
    from seva_plugin.plugins.writers.readback import data_location, iter_pairs, layout_of

    files = DatasetFiles(data_dir, name)
    manifest = files.read_manifest()
    layout = layout_of(manifest) if manifest else "jsonl"
    location = data_location(files.dataset_dir, name, layout)
    if not os.path.exists(location):
        raise ConfigError(f"no dataset '{name}' in {data_dir}: {location} not found.")
    if layout == "jsonl":
        records = _read_jsonl(location)
    else:  # Parquet shards: read back as pairs, shown as the sharegpt records the rest of this module reads
        records = [_sharegpt(p) for p in iter_pairs(files.dataset_dir, name, layout) if isinstance(p, dict)]
    return records, manifest, list(files.journal_entries())


def _sharegpt(pair: dict) -> dict:
    record = {
        "id": pair.get("id"),
        "conversations": [{"from": "human", "value": pair["prompt"]}],
        "chosen": {"from": "gpt", "value": pair["chosen"]},
        "rejected": {"from": "gpt", "value": pair["rejected"]},
        "images": pair["images"],
    }
    return {**record, **{k: pair[k] for k in ("provenance", "meta", "scores") if pair.get(k)}}


def open_images(record: dict, data_dir: str) -> list:
    """The record's images as RGB: a path by LLaMA-Factory's rule (relative paths joined to the
    dataset dir, its media_dir, when that exists), or an embedded image (``{"bytes", "path"}``)."""
    import io

    from PIL import Image

    from seva_plugin.pipeline.images import load_rgb

    out = []
    for p in record.get("images") or []:
        if isinstance(p, dict):
            out.append(Image.open(io.BytesIO(p["bytes"])).convert("RGB"))
            continue
        joined = os.path.join(data_dir, p)
        out.append(load_rgb(os.path.abspath(joined if not os.path.isabs(p) and os.path.exists(joined) else p)))
    return out


# -- summary ------------------------------------------------------------------------------
def summarise(records: list[dict], manifest: dict, journal: list[dict]) -> dict:
    counts = manifest.get("counts", {})
    dropped = counts.get("dropped") or dict(Counter(e["reason"] for e in journal if e["kind"] == "drop"))
    generated: list[dict | None] = [e for e in journal if e["kind"] in ("pair", "drop") and "chosen" in e]
    identical = sum(1 for e in generated if e is not None and e.get("reason") == "identical")
    if not generated:  # no journal: fall back on the manifest's counts (a no_pair record generated no pair)
        identical = dropped.get("identical", 0)
        generated = [None] * (len(records) + sum(v for k, v in dropped.items() if k != "no_pair"))

    def lengths(key):
        words = [len(r[key]["value"].split()) for r in records]
        return {"mean": statistics.fmean(words), "median": statistics.median(words), "max": max(words)} if words else {}

    return {
        "pairs": len(records),
        "dropped": dropped,
        "rejected": counts.get("rejected", {}),
        "generated": len(generated),
        "identical_rate": identical / len(generated) if generated else 0.0,
        "chosen_words": lengths("chosen"),
        "rejected_words": lengths("rejected"),
    }


def format_summary(name: str, s: dict, manifest: dict) -> str:
    cfg = manifest.get("config", {})

    def counts(d):
        return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"

    def words(d):
        return f"mean {d['mean']:.1f}, median {d['median']:g}, max {d['max']}" if d else "-"

    lines = [f"dataset {name}: {s['pairs']} pairs"]
    if cfg:
        strategy = cfg.get("strategy", "seva")
        augment = f"augment {_spec(cfg.get('augment'))}" if uses_augmenter(strategy) else f"no augmenter ({_spec(strategy).split(' ')[0]} never applies one)"
        lines.append(f"  model {cfg.get('model')} (template {cfg.get('template')}), strategy {_spec(strategy)}, {augment}")
    lines += [
        f"  dropped: {counts(s['dropped'])}",
        f"  rejected inputs: {counts(s['rejected'])}",
        f"  identical rate: {100 * s['identical_rate']:.1f}% of {s['generated']} generated pairs",
        f"  answer length in words: chosen {words(s['chosen_words'])}; rejected {words(s['rejected_words'])}",
    ]
    return "\n".join(lines)


def uses_augmenter(strategy) -> bool:
    """Whether a build's strategy applies its augmenter (CSR does not); unknown strategies are taken to."""
    from seva_plugin.errors import SevaError
    from seva_plugin.pipeline.config import split_spec
    from seva_plugin.registry import get_registry

    try:
        name, _ = split_spec(strategy, "strategy", default="seva")
        return get_registry().get("strategy", name).cls.uses_augmenter
    except SevaError:
        return True


def _spec(spec) -> str:
    if isinstance(spec, dict):
        params = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "name")
        return f"{spec.get('name')}" + (f" ({params})" if params else "")
    return str(spec)


# -- the views the model saw --------------------------------------------------------------
class ViewMaker:
    """Rebuilds each record's augmented view from the manifest config, without model weights."""

    def __init__(self, config: dict):
        from seva_plugin.pipeline.config import split_spec
        from seva_plugin.registry import get_registry

        registry = get_registry()
        name, params = split_spec(config.get("augment"), "augment")
        self.augmenter = registry.get("augmenter", name).build(params, "augment")
        strategy, _ = split_spec(config.get("strategy", "seva"), "strategy")
        # CSR and the like answer on the clean image only: there is no second view to show
        self.uses_augmenter = registry.get("strategy", strategy).cls.uses_augmenter
        backend_name, backend_params = split_spec(config.get("backend", "hf"), "backend")
        if backend_name != "hf":  # other backends render prompts the same way; keep only what shapes pixels
            backend_params = {k: v for k, v in backend_params.items() if k in INPUT_KEYS}
        self.backend = registry.get("backend", "hf").build(backend_params, "backend", model=config["model"], template=config["template"])
        self._load_processor()

    def _load_processor(self) -> None:
        os.environ.setdefault("LLAMAFACTORY_VERBOSITY", "WARN")  # keep the terminal summary readable
        import transformers

        transformers.logging.set_verbosity_error()
        self.renderer = self.backend.renderer  # type: ignore[attr-defined]  # the hf backend's renderer; the gallery follows the build's backend in issue 21 item 7
        self.processor = self.renderer.processor

    def views(self, record: dict, images: list) -> tuple[list, list]:
        """``(clean, augmented)``: the images of one record as the model saw them (after the
        processor's resize and crop, de-normalised), clean and under view 1 of the build's
        strategy; no augmented images when the strategy never applies its augmenter."""
        from seva_plugin.interfaces import CLEAN, View
        from seva_plugin.pipeline.records import LoadedRecord, PromptRecord
        from seva_plugin.plugins.backends.pixels import image_slices

        seed = record.get("provenance", {}).get("seed")
        prompt = record["conversations"][0]["value"]
        loaded = LoadedRecord(PromptRecord(record.get("id", ""), prompt, []), images, int(seed or 0))
        rows = self.renderer.image_rows(images)  # InternVL tiles, Gemma 3 crops: rows of pixel_values per image
        clean = self.renderer.view_inputs([loaded], CLEAN)
        seen = [self.to_image(clean[1], s, k, img) for k, (s, img) in enumerate(zip(image_slices(clean[1], rows), images, strict=True))]
        if not self.uses_augmenter or seed is None:
            return seen, []
        _, mm = self.renderer.view_inputs([loaded], View(1, self.augmenter), clean)
        return seen, [self.to_image(mm, s, k, img) for k, (s, img) in enumerate(zip(image_slices(mm, rows), images, strict=True))]

    def to_image(self, mm: dict, where: slice, index: int = 0, image=None):
        """De-normalise image ``index`` (rows ``where`` of ``pixel_values``) for display: the Qwen families'
        flattened patches un-patchified; InternVL's tiles put back in their grid (the thumbnail, a
        copy of the whole image, left out; ``image`` is the source image, whose size chose the grid);
        otherwise the first row (LLaVA-NeXT's base view of the whole image, Gemma 3's whole image
        before any crops)."""
        import numpy as np
        from PIL import Image

        ip = self.processor.image_processor
        mean, std = np.asarray(ip.image_mean, dtype=np.float32), np.asarray(ip.image_std, dtype=np.float32)
        x = mm["pixel_values"][where].float().numpy()
        if "image_grid_thw" in mm:
            x = _unpatchify(x, [int(v) for v in mm["image_grid_thw"][index]], ip)
        elif self.renderer.plugin == "intern_vl" and len(x) > 1:
            x = _untile(x, self._tile_grid(image, len(x)))
        else:
            x = x[0]
            while x.ndim > 3:  # LLaVA-NeXT: (tiles, C, H, W); the first tile is the whole image
                x = x[0]
        x = x.transpose(1, 2, 0) * std + mean
        return Image.fromarray((np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8))

    def _tile_grid(self, image, tiles: int) -> tuple[int, int] | None:
        """``(columns, rows)`` of the grid InternVL's processor cut ``image`` into (``tiles`` = the grid
        plus a thumbnail), found as the processor finds it: from the image as LLaMA-Factory resized it."""
        if image is None:
            return None
        from transformers.models.got_ocr2.image_processing_got_ocr2 import get_optimal_tiled_canvas

        processor, ip = self.processor, self.processor.image_processor
        (resized,) = self.renderer.template.mm_plugin._regularize_images(
            [image], image_max_pixels=getattr(processor, "image_max_pixels", 768 * 768), image_min_pixels=getattr(processor, "image_min_pixels", 32 * 32)
        )["images"]
        size = ip.size if isinstance(ip.size, dict) else {"height": ip.size.height, "width": ip.size.width}
        # LLaMA-Factory asks for 1..12 tiles when its crop_to_patches is on; else the image processor's own limits apply
        low, high = (1, 12) if getattr(processor, "crop_to_patches", False) else (ip.min_patches, ip.max_patches)
        columns, rows = get_optimal_tiled_canvas((resized.height, resized.width), (size["height"], size["width"]), low, high)
        return (columns, rows) if columns * rows + 1 == tiles else None


def _untile(x, grid: tuple[int, int] | None):
    """InternVL tiles (grid tiles row by row, then a thumbnail) -> (C, H, W) of the grid; without a
    known grid, every tile side by side."""
    import numpy as np

    if grid is None:
        return np.concatenate(list(x), axis=2)
    columns, rows = grid
    return np.concatenate([np.concatenate(list(x[r * columns : (r + 1) * columns]), axis=2) for r in range(rows)], axis=1)


def _unpatchify(x, thw: list[int], ip):
    """Invert Qwen2-VL's patch flattening: (t*h*w, C*tp*p*p) -> (C, H, W) of the first frame."""
    t, h, w = thw
    p, tp, m = ip.patch_size, ip.temporal_patch_size, ip.merge_size
    c = x.shape[1] // (tp * p * p)
    x = x.reshape(t, h // m, w // m, m, m, c, tp, p, p)
    x = x.transpose(0, 6, 5, 1, 3, 7, 2, 4, 8)  # t, tp, c, h/m, m, p, w/m, m, p
    return x.reshape(t * tp, c, h * p, w * p)[0]


# -- html ---------------------------------------------------------------------------------
def data_uri(image, size: int = 192) -> str:
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


CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 4px} pre.summary{background:#fff;border:1px solid #ddd;padding:10px;white-space:pre-wrap}
.pair{background:#fff;border:1px solid #ddd;border-radius:6px;margin:14px 0;padding:12px;display:grid;grid-template-columns:auto 1fr;gap:14px}
.imgs{display:flex;gap:10px} figure{margin:0;text-align:center;font-size:12px;color:#555}
figure img{width:160px;height:160px;object-fit:contain;image-rendering:pixelated;border:1px solid #ccc;background:#eee}
.meta{font-size:12px;color:#777} .q{font-weight:600;margin:4px 0 8px}
.answers{display:grid;grid-template-columns:1fr 1fr;gap:10px}
.answers div{border-radius:4px;padding:8px;white-space:pre-wrap;word-break:break-word}
.chosen{background:#eef8ee;border:1px solid #9c9} .rejected{background:#fbeeee;border:1px solid #d99}
.label{font-size:11px;text-transform:uppercase;letter-spacing:.05em;color:#555;display:block;margin-bottom:2px}
mark.del{background:#7ecf7e} mark.ins{background:#f08a8a}
"""


def render_pair(n: int, record: dict, clean: list, augmented: list, augment_label: str) -> str:
    chosen, rejected = record["chosen"]["value"], record["rejected"]["value"]
    a, b = word_diff(chosen, rejected)
    question = record["conversations"][0]["value"].replace(IMAGE_TOKEN, "").strip()
    figs = []
    for k, img in enumerate(clean):
        caption = "clean (chosen)" if augmented else "image (both answers)"
        figs.append(f'<figure><img alt="clean image {k}" src="{data_uri(img)}"><figcaption>{caption}</figcaption></figure>')
        if k < len(augmented):
            figs.append(
                f'<figure><img alt="augmented view {k}" src="{data_uri(augmented[k])}"><figcaption>{H.escape(augment_label)} (rejected)</figcaption></figure>'
            )
    prov = record.get("provenance", {})
    return (
        f'<section class="pair" id="pair-{n}"><div class="imgs">{"".join(figs)}</div><div>'
        f'<div class="meta">#{n} &middot; id {H.escape(str(record.get("id", "")))} &middot; seed {H.escape(str(prov.get("seed", "-")))}</div>'
        f'<div class="q">{H.escape(question)}</div>'
        f'<div class="answers"><div class="chosen"><span class="label">chosen</span>{_scores(record, "chosen")}{a}</div>'
        f'<div class="rejected"><span class="label">rejected</span>{_scores(record, "rejected")}{b}</div></div></div></section>'
    )


def _scores(record: dict, side: str) -> str:
    """A side's scores (CSR: reward, language, visual, sentences), when the strategy recorded them."""
    scores = (record.get("scores") or {}).get(side)
    if not isinstance(scores, dict):
        return ""
    shown = [f"{k.replace('_', ' ')} {v:g}" for k, v in scores.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return f'<span class="meta scores">{H.escape(" · ".join(shown))}</span><br>' if shown else ""


def write_gallery(path: str, name: str, records: list[dict], data_dir: str, manifest: dict, summary_text: str, limit: int) -> int:
    """Write the gallery; returns how many pairs it shows."""
    from tqdm.auto import tqdm

    config = manifest.get("config") or {}
    maker = ViewMaker(config) if config.get("augment") else None
    label = _spec(config.get("augment")) if maker else ""
    shown = records[: max(0, limit)]
    parts = []
    for n, record in enumerate(tqdm(shown, desc="gallery", unit="pair", disable=len(shown) < 50), 1):
        images = open_images(record, data_dir)
        clean, augmented = maker.views(record, images) if maker else (images, [])
        parts.append(render_pair(n, record, clean, augmented, label))
    more = f"Showing the first {len(shown)} of {len(records)} pairs (raise --limit to see more)." if len(shown) < len(records) else f"All {len(records)} pairs."
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>seva inspect: {H.escape(name)}</title>'
        f"<style>{CSS}</style></head><body><h1>seva inspect: {H.escape(name)}</h1>"
        f'<pre class="summary">{H.escape(summary_text)}</pre><p>{more} Words that differ are marked: '
        f'<mark class="del">only in chosen</mark> <mark class="ins">only in rejected</mark>.</p>' + "".join(parts) + "</body></html>"
    )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(page)
    return len(shown)


def inspect_dataset(data_dir: str, name: str, html: str | None = None, limit: int = 200) -> str:
    """The terminal summary; with ``html``, also write the gallery of the first ``limit`` pairs."""
    records, manifest, journal = load_dataset(data_dir, name)
    text = format_summary(name, summarise(records, manifest, journal), manifest)
    if html:
        shown = write_gallery(html, name, records, data_dir, manifest, text, limit)
        text += f"\ngallery: {os.path.abspath(html)} ({shown} of {len(records)} pairs)"
    return text

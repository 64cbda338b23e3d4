"""The views a build fed the model, rebuilt for display without its weights.

The build's strategy says which requests it sends for a record (``Strategy.planned_requests``: its
views and, where it asks something else than the record's prompt, that prompt and system); each
view's images are made by the public rendering API (``seva_plugin.rendering``) with the template
and the keys of the build's backend that shape what the model sees, from the record's seed, exactly
as any backend made them (after the processor's resize and crop; pixels de-normalised by
``plugins/backends/pixels.py``). Only the tokenizer and processor are loaded.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from seva_plugin.contract import CLEAN, GenerationRequest, View
from seva_plugin.errors import SevaError, short
from seva_plugin.interfaces import Strategy
from seva_plugin.pipeline.records import LoadedRecord, PromptRecord

# The backend keys that shape what the model sees (LLaMA-Factory's own keys, which both built-in
# backends pass to the renderer); the views are rebuilt with them.
RENDERING_KEYS = ("image_max_pixels", "crop_to_patches", "image_do_pan_and_scan", "enable_thinking", "trust_remote_code")
# A special token repeated this often (image patches) is shown once with its count.
_RUN = re.compile(r"(<[^<>\s]{1,40}>|\[[^\[\]\s]{1,40}\])\1{7,}")


@dataclass
class Shown:
    """One view of a pair's images as the model saw it."""

    view: int
    label: str
    images: list[Any]


@dataclass
class Asked:
    """A prompt the strategy asked, rendered by the build's template."""

    label: str
    text: str


def rendering_keys(config: dict[str, Any]) -> dict[str, Any]:
    from seva_plugin.pipeline.config import split_spec

    _, params = split_spec(config.get("backend", "hf"), "backend", default="hf")
    return {k: params[k] for k in RENDERING_KEYS if params.get(k) is not None}


def collapse_runs(text: str) -> str:
    """``<image><image>...`` (576 times) -> ``<image>×576``."""
    return _RUN.sub(lambda m: f"{m.group(1)}×{len(m.group(0)) // len(m.group(1))}", text)


class ViewMaker:
    """Rebuilds each pair's views from a build's manifest config."""

    def __init__(self, config: dict[str, Any]):
        from seva_plugin.pipeline.config import split_spec
        from seva_plugin.registry import get_registry
        from seva_plugin.rendering import Renderer

        os.environ.setdefault("LLAMAFACTORY_VERBOSITY", "WARN")  # keep the terminal summary readable
        import transformers

        transformers.logging.set_verbosity_error()
        registry = get_registry()
        name, params = split_spec(config.get("augment"), "augment")
        self.augmenter = registry.get("augmenter", name).build(params, "augment")
        self.augment_label = _label(config.get("augment"))
        self.strategy, self.note = _strategy(config)
        self.renderer = Renderer.load(config["model"], config["template"], **rendering_keys(config))
        self.processor = self.renderer.processor

    def requests(self, loaded: LoadedRecord) -> list[GenerationRequest]:
        """The strategy's planned requests for ``loaded``; the clean view alone where it plans none."""
        planned = self.strategy.planned_requests([loaded], self.augmenter) if self.strategy is not None else []
        return planned or [GenerationRequest(loaded, CLEAN)]

    def views(self, pair: dict[str, Any], images: list[Any]) -> tuple[list[Shown], list[Asked]]:
        """The pair's images under each view its strategy planned (the clean one first), and each
        different prompt it asked, rendered. Without a seed, views that need one are left out."""
        seed = (pair.get("provenance") or {}).get("seed")
        loaded = LoadedRecord(PromptRecord(str(pair.get("id", "")), pair["prompt"], []), images, int(seed or 0))
        requests = [r for r in self.requests(loaded) if r.view.clean or seed is not None]
        views: dict[int, View] = {CLEAN.id: CLEAN}
        for request in requests:
            views.setdefault(request.view.id, request.view)
        clean = self.renderer.view_inputs([loaded], CLEAN)
        shown = [self._shown(loaded, view, clean) for view in sorted(views.values(), key=lambda v: v.id)]
        asked: dict[tuple[str, str | None], tuple[list[int], str]] = {}  # (prompt, system) -> (its views, rendered)
        for request in requests:
            key = (request.user_prompt, request.system)
            if key not in asked:
                asked[key] = [], collapse_runs(self.renderer.render(request, self.renderer.view_images(loaded, request.view)).text)
            if request.view.id not in asked[key][0]:
                asked[key][0].append(request.view.id)
        prompts = []
        for (_, system), (ids, text) in asked.items():
            label = f"view{'s' * (len(ids) > 1)} {', '.join(map(str, ids))}" + (f", system {system!r}" if system else "")
            prompts.append(Asked(label, text))
        return shown, prompts

    def _shown(self, loaded: LoadedRecord, view: View, clean: tuple[list[list[int]], dict[str, Any]]) -> Shown:
        from seva_plugin.plugins.backends.pixels import displayed_image, image_slices

        images = self.renderer.view_images(loaded, view)  # a pixel-space augmenter's output, else the record's
        _, mm = clean if view.clean else self.renderer.view_inputs([loaded], view, clean)
        slices = image_slices(mm, self.renderer.image_rows(images))
        seen = [displayed_image(mm, s, self.processor, self.renderer.plugin, k, img) for k, (s, img) in enumerate(zip(slices, images, strict=True))]
        label = "clean" if view.clean else f"view {view.id}: {_label(view.augmenter) if view.augmenter is not self.augmenter else self.augment_label}"
        return Shown(view.id, label, seen)

    def to_image(self, mm: dict[str, Any], where: slice, index: int = 0, source: Any = None) -> Any:
        """Image ``index`` of ``mm`` de-normalised for display (``pixels.displayed_image``)."""
        from seva_plugin.plugins.backends.pixels import displayed_image

        return displayed_image(mm, where, self.processor, self.renderer.plugin, index, source)


def _label(spec: Any) -> str:
    from seva_plugin.commands.gallery.data import spec_text

    return spec_text(spec) if isinstance(spec, dict | str) else str(getattr(spec, "name", spec))


def _strategy(config: dict[str, Any]) -> tuple[Strategy | None, str]:
    """The build's strategy, or None and why, when it cannot be made here (CSR's CLIP missing, a
    plugin not installed): the clean view is shown then."""
    from seva_plugin.pipeline.config import split_spec
    from seva_plugin.registry import get_registry

    entry = None
    try:
        name, params = split_spec(config.get("strategy", "seva"), "strategy", default="seva")
        entry = get_registry().get("strategy", name)
        strategy: Strategy = entry.build(params, "strategy")
        return strategy, ""
    except SevaError as exc:
        if entry is not None and entry.cls.planned_requests is Strategy.planned_requests and entry.cls.views is Strategy.views:
            return None, ""  # it plans no requests ahead (CSR): the clean view is all there is to show
        return None, f"the build's strategy cannot be made here ({short(exc)}): its views are not rebuilt, the clean images are shown"

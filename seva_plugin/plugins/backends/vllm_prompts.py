"""The prompts the ``vllm`` backend hands its engine, one per request: LLaMA-Factory's ids (rendered
through ``seva_plugin.rendering`` as for ``hf``) with each image's run of image tokens cut back to
one placeholder, and the image features the vision tower computed here (``vllm_inputs.py``)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from seva_plugin.contract import CLEAN
from seva_plugin.errors import RecordError
from seva_plugin.plugins.backends.batching import runs_by_view
from seva_plugin.plugins.backends.vllm_inputs import ImageEncoder, collapse_images
from seva_plugin.rendering import Renderer


@dataclass
class EnginePrompt:
    """One request's prompt for vLLM, before any answer prefix or scored text."""

    ids: list[int]  # prompt ids, one placeholder per image
    images: Any  # multi_modal_data["image"], or None without images
    length: int  # prompt tokens once vLLM has expanded the placeholders
    record_id: str


@dataclass
class Row:
    """One vLLM request: answer ``k`` of contract request ``request`` (or its scored text)."""

    prompt: dict[str, Any]  # vLLM's TokensPrompt: prompt_token_ids and multi_modal_data
    prefix_ids: list[int]
    request: int
    k: int
    length: int  # prompt tokens once vLLM has expanded the image placeholders
    record_id: str = ""


def engine_prompts(
    requests: Sequence[Any], renderer: Renderer, encoder: ImageEncoder, image_token: int, form: str, markers: tuple[int, int] | None
) -> list[EnginePrompt]:
    """One :class:`EnginePrompt` per request, in order. Consecutive requests with the same view are
    rendered and encoded together; a tensor-space view reuses the clean inputs of the same records
    and prompts made in this call."""
    out: list[EnginePrompt] = []
    clean: dict[tuple[Hashable, ...], Any] = {}
    for run in runs_by_view(requests):
        records = [r.record for r in run]
        prompts = [(r.user_prompt, r.system) for r in run]
        key = tuple((id(r.record), p, s) for r, (p, s) in zip(run, prompts, strict=True))
        view = run[0].view
        if (view.clean or view.augmenter.space == "tensor") and key not in clean:
            clean[key] = renderer.view_inputs(records, CLEAN, prompts=prompts)
        ids, mm = renderer.view_inputs(records, view, clean.get(key), prompts)
        features = iter(encoder.features(mm, [k for r in records for k in renderer.image_rows(r.images)]))
        first = 0
        for r, prompt_ids in zip(run, ids, strict=True):
            feats = [next(features) for _ in r.record.images]
            collapsed = collapse_images(prompt_ids, image_token, [f.shape[0] for f in feats], markers)
            out.append(EnginePrompt(collapsed, embeddings(feats, mm, first, form) if feats else None, len(prompt_ids), r.record.id))
            first += len(feats)
    return out


def embeddings(feats: list[Any], mm: dict[str, Any], first: int, form: str) -> Any:
    """One request's image features in the form its family's vLLM model takes (``first``: the index
    of its first image in the run's tensors)."""
    if form == "list":
        return feats
    import torch

    return {"image_embeds": torch.cat(feats), "image_grid_thw": mm["image_grid_thw"][first : first + len(feats)]}


def row(prompt: EnginePrompt, tail: list[int], prefix_ids: list[int], request: int, k: int) -> Row:
    """vLLM's request for ``prompt`` followed by ``tail`` (an answer prefix, or a prefix and a scored text)."""
    tokens: dict[str, Any] = {"prompt_token_ids": prompt.ids + tail}
    if prompt.images is not None:
        tokens["multi_modal_data"] = {"image": prompt.images}
    return Row(tokens, prefix_ids, request, k, prompt.length + len(tail), prompt.record_id)


def check_lengths(rows: Sequence[Row], context: int, limit: int | None, max_new_tokens: int) -> None:
    """A prompt (image tokens and prefix included) must leave room for the answer, by ``hf``'s rule
    (``hf_inputs.prompt_budget``): else the record is rejected as ``too_long``, before the engine sees it."""
    for r in rows:
        if limit is not None and r.length > limit:
            raise RecordError(
                f"prompt too long: {r.length:,} tokens with its images' tokens, over the {limit:,} that backend.max_model_len {context:,} "
                f"leaves beside max_new_tokens {max_new_tokens:,}; raise backend.max_model_len, or set backend.image_max_pixels "
                "(as in the training recipe) for smaller images",
                "too_long",
            )

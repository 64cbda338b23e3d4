"""The ``hf`` backend's model inputs: requests rendered through ``seva_plugin.rendering`` (one run of
requests with the same view processed together), padded into one batch, and teacher-forced scoring.

Nothing here imports torch or transformers at module level."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from seva_plugin.contract import CLEAN
from seva_plugin.plugins.backends.batching import runs_by_view
from seva_plugin.plugins.backends.pixels import concat_mm
from seva_plugin.rendering import Renderer, token_types


def rendered(renderer: Renderer, requests: Sequence[Any], copies: Callable[[Any], int]) -> tuple[list[list[int]], dict[str, Any]]:
    """Prompt ids and multimodal tensors, one row per copy of each request (``copies(request)``: its
    ``n`` answers), in order. Consecutive requests with the same view are processed together; a
    tensor-space view reuses the clean inputs of the same records *and prompts* made in this call."""
    prompt_ids: list[list[int]] = []
    mm_parts = []
    clean: dict[tuple[Hashable, ...], tuple[list[list[int]], dict[str, Any]]] = {}
    for run in runs_by_view(requests):
        rows = [r for r in run for _ in range(copies(r))]
        records = [r.record for r in rows]
        prompts = [(r.user_prompt, r.system) for r in rows]
        key = tuple((id(r.record), p, s) for r, (p, s) in zip(rows, prompts, strict=True))  # the records are alive for the whole call
        view = run[0].view
        if (view.clean or view.augmenter.space == "tensor") and key not in clean:
            clean[key] = renderer.view_inputs(records, CLEAN, prompts=prompts)
        ids, mm = renderer.view_inputs(records, view, clean.get(key), prompts)
        prompt_ids += ids
        mm_parts.append(mm)
    return prompt_ids, concat_mm(mm_parts)


def pad_id(tokenizer: Any) -> int:
    return int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)


def batch_inputs(model: Any, tokenizer: Any, ids: list[list[int]], mm: dict[str, Any], side: str = "left") -> dict[str, Any]:
    """Padded ids (left for generation, right for a teacher-forced pass, whose positions then need no
    shift) plus multimodal tensors, on the model's device and dtype."""
    import torch

    pad = pad_id(tokenizer)
    width = max(map(len, ids))
    fill = [[pad] * (width - len(x)) for x in ids]
    ones = [[1] * len(x) for x in ids]
    rows = [f + x for f, x in zip(fill, ids, strict=True)] if side == "left" else [x + f for f, x in zip(fill, ids, strict=True)]
    mask = [[0] * len(f) + o for f, o in zip(fill, ones, strict=True)] if side == "left" else [o + [0] * len(f) for f, o in zip(fill, ones, strict=True)]
    input_ids, attention_mask = torch.tensor(rows), torch.tensor(mask)
    inputs = {"input_ids": input_ids.to(model.device), "attention_mask": attention_mask.to(model.device)}
    for key, value in mm.items():
        if key == "token_type_ids":  # Gemma 3: per-prompt lists; rebuilt for the padded rows (prefixes included) as training's collator pads them
            value = token_types(input_ids, model.config)
        if not isinstance(value, torch.Tensor):
            value = torch.tensor(value)
        if torch.is_floating_point(value):
            value = value.to(model.dtype)
        inputs[key] = value.to(model.device)
    if "mm_token_type_ids" in inspect.signature(model.forward).parameters:
        inputs["mm_token_type_ids"] = token_types(input_ids, model.config).to(model.device)
    return inputs


def shared_heads(requests: Sequence[Any], split: Sequence[tuple[list[int], list[int]]]) -> list[int]:
    """Per score request, the request whose row scores it: the first one with the same record, view,
    prompt, system and prefix ids when both texts are one token (a one-token text's log-probability
    is its head's next-token distribution, so a yes/no probe's words need one row), else itself."""
    first: dict[Hashable, int] = {}
    source = []
    for i, (r, (prefix, text)) in enumerate(zip(requests, split, strict=True)):
        key = (id(r.record), r.view.key(), r.user_prompt, r.system, tuple(prefix)) if len(text) == 1 else ("alone", i)
        source.append(first.setdefault(key, i))
    return source


def teacher_forced(
    model: Any, tokenizer: Any, heads: list[list[int]], texts: list[list[int]], mm: dict[str, Any], also: Sequence[Sequence[int]] = ()
) -> tuple[list[list[float]], list[dict[int, float]]]:
    """Each ``texts[i]`` token's log-probability after ``heads[i]`` (prompt and prefix) and the text's
    earlier tokens, under the unscaled model, in one forward pass over the batch; and per row, the
    log-probabilities of the tokens ``also[i]`` in the place of the text's first token."""
    import torch

    ends = [len(h) + len(t) for h, t in zip(heads, texts, strict=True)]
    inputs = batch_inputs(model, tokenizer, [h + t for h, t in zip(heads, texts, strict=True)], mm, side="right")
    lo = min(len(h) for h in heads) - 1  # the first position whose logits any row needs
    kwargs: dict[str, Any] = {}
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        kwargs["logits_to_keep"] = torch.arange(lo, max(ends) - 1, device=model.device)
    else:
        lo = 0
    with torch.inference_mode():
        logits = model(**inputs, **kwargs).logits
    out: list[list[float]] = []
    first: list[dict[int, float]] = []
    for row, (head, text) in enumerate(zip(heads, texts, strict=True)):
        if not text:
            out.append([])
            first.append({})
            continue
        start = len(head) - 1 - lo
        logp = logits[row, start : start + len(text)].float().log_softmax(-1)
        out.append(logp.gather(1, torch.tensor(text, device=logp.device)[:, None]).squeeze(1).tolist())
        others = list(also[row]) if row < len(also) else []
        first.append(dict(zip(others, logp[0, others].tolist(), strict=True)))
    return out, first


def prompt_budget(setting: int | None, context: int | None, max_new_tokens: int) -> int | None:
    """The longest prompt a backend takes: ``max_prompt_tokens`` when set, else what leaves room in
    the model's context for ``max_new_tokens`` (the whole context if that is all of it)."""
    if setting is not None:
        return setting
    if context is None:
        return None
    return context - max_new_tokens if context > max_new_tokens else context


def groups(requests: Sequence[Any], decoding: Callable[[Any], Hashable]) -> list[list[int]]:
    """Indices of requests grouped by decoding settings, in order of first appearance."""
    out: dict[Hashable, list[int]] = {}
    for i, r in enumerate(requests):
        out.setdefault(decoding(r), []).append(i)
    return list(out.values())

"""One prefill per request, shared by its ``n`` answers (the ``hf`` backend's prompt cache).

A request for ``n`` sampled answers (CSR: every live path's next-sentence proposals) puts ``n``
identical rows, prompt, image tokens and answer prefix, in one ``generate`` call; ``generate``
would encode the images and prefill each row on its own. Here the prompt and prefix of each
request are prefilled once, all but their last token, with the images, and the KV cache is
repeated for its rows; ``generate`` then starts from that cache (``past_key_values``) and feeds
only the last token of each row, without pixels. Positions are those ``generate`` gives a
left-padded batch (the attention mask's running count), so the rows see what they saw before:
the same tokens, positions and image features, computed once.

The cache's full-attention layers also keep room for the new tokens: transformers' dynamic layer
concatenates each step's key and value to copies of the whole cache, which at hundreds of rows
and a few hundred tokens is a third of a CPU step; here they are written into place, and the
attention reads a view of exactly the tokens so far (the same values, as before). Calls with one
answer a request get such a cache too (:func:`reserved`), empty, for ``generate``'s own prefill.

Families whose positions depend on more than the attention mask, or whose models keep state
from the prefill (Qwen-VL's M-RoPE deltas, Gemma 3's bidirectional image attention), keep
``generate``'s own prefill of every row, with the reserved cache. Nothing here imports torch or
transformers at module level.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

# 1-D positions from the attention mask, nothing kept on the model between forward calls
FAMILIES = frozenset({"llava", "llava_next", "internvl"})


def applies(model_type: str | None, answers: Sequence[int]) -> bool:
    """Whether a call whose requests ask ``answers`` each goes through the shared prefill."""
    return model_type in FAMILIES and any(n > 1 for n in answers)


def prefilled(model: Any, inputs: dict[str, Any], answers: Sequence[int], max_new_tokens: int) -> tuple[dict[str, Any], Any]:
    """``inputs``: one left-padded row per request, with its multimodal tensors, padded as wide as the
    call's batch. Returns the batch's ``input_ids`` and ``attention_mask`` (row ``i`` repeated
    ``answers[i]`` times) and the KV cache of all their tokens but the last, with room for
    ``max_new_tokens`` more, for ``generate``."""
    import torch
    from transformers import DynamicCache

    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)  # generate's rule for a left-padded batch
    extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    kv = DynamicCache(config=model.config.get_text_config(decoder=True))
    with torch.inference_mode():
        model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1], past_key_values=kv, use_cache=True, logits_to_keep=1, **extra)
    rows = torch.repeat_interleave(torch.arange(len(answers), device=ids.device), torch.tensor(list(answers), device=ids.device))
    layers = []
    for layer in kv.layers:
        if type(layer) is _dynamic_layer():
            layers.append(_reserved()(max_new_tokens + 1, layer, answers))  # + 1: the prompt's last token is fed with the new ones
        else:  # sliding-window layers and the like: repeated as they are
            layer.batch_select_indices(rows)  # type: ignore[union-attr]  # on every layer class transformers builds, not on the mixins typed
            layers.append(layer)
    kv.layers = layers
    return {"input_ids": ids[rows], "attention_mask": mask[rows]}, kv


def _dynamic_layer() -> type:
    from transformers.cache_utils import DynamicLayer

    return DynamicLayer


def reserved(model: Any, max_new_tokens: int) -> Any:
    """An empty KV cache for ``generate`` whose full-attention layers keep room for ``max_new_tokens``
    after the prompt that ``generate`` prefills (other layers as transformers makes them)."""
    from transformers import DynamicCache

    kv = DynamicCache(config=model.config.get_text_config(decoder=True))
    kv.layers = [_reserved()(max_new_tokens) if type(layer) is _dynamic_layer() else layer for layer in kv.layers]
    return kv


@cache
def _reserved() -> type:
    """A dynamic cache layer that writes new keys and values into room kept for them."""

    class ReservedLayer(_dynamic_layer()):  # type: ignore[misc]
        def __init__(self, room: int, filled: Any = None, answers: Sequence[int] = ()):
            """Room for ``room`` tokens after the first keys and values: ``filled``'s, one row per
            request, row ``i`` repeated ``answers[i]`` times; or, with none, the first update's."""
            super().__init__()
            self.room = room
            if filled is not None:
                self._fill(filled.keys, filled.values, answers)

        def _fill(self, keys: Any, values: Any, answers: Sequence[int]) -> None:
            self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
            length = keys.shape[-2]
            self.buffers = []
            for part in (keys, values):
                buffer = part.new_empty((sum(answers), *part.shape[1:-2], length + self.room, part.shape[-1]))
                if len(set(answers)) == 1:  # one broadcast copy
                    buffer.view(len(answers), answers[0], *buffer.shape[1:])[..., :length, :] = part[:, None]
                else:
                    start = 0
                    for i, n in enumerate(answers):
                        buffer[start : start + n, ..., :length, :] = part[i : i + 1]
                        start += n
                self.buffers.append(buffer)
            self.keys, self.values = (b[..., :length, :] for b in self.buffers)

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            if not self.is_initialized:  # generate's prefill: these rows as they are
                self._fill(key_states, value_states, [1] * key_states.shape[0])
                return self.keys, self.values
            start = self.keys.shape[-2]
            end = start + key_states.shape[-2]
            if end > self.buffers[0].shape[-2]:  # no room left (never with the room asked for): as the dynamic layer
                return super().update(key_states, value_states, *args, **kwargs)
            self.buffers[0][..., start:end, :] = key_states
            self.buffers[1][..., start:end, :] = value_states
            self.keys, self.values = (b[..., :end, :] for b in self.buffers)
            return self.keys, self.values

    return ReservedLayer

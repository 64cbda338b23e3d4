"""Tokens a ``vllm`` request may never produce, banned inside vLLM's engine.

vLLM's ``logit_bias`` is added before the temperature divides the logits and is capped at -100, so
a banned token keeps ``exp(-100 / temperature)`` of its odds: at temperature 50 that is
``exp(-2)``, and special tokens get sampled. This logits processor sets the banned logits to
``-inf`` instead, which no temperature undoes. A request names its banned ids in
``SamplingParams.extra_args[KEY]``.

vLLM loads it in its engine process by name (``vllm.LLM(logits_processors=[FQCN])``); only that
process imports this module, so importing vLLM here is fine.
"""

from __future__ import annotations

from typing import Any

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

KEY = "seva_banned_token_ids"
FQCN = "seva_plugin.plugins.backends.vllm_bans:BanTokens"


class BanTokens(LogitsProcessor):
    """``-inf`` at each request's banned ids (``extra_args[KEY]``); requests without any are untouched."""

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool) -> None:
        self.device = device
        self.banned: dict[int, list[int]] = {}
        self.where: tuple[torch.Tensor, torch.Tensor] | None = None

    def is_argmax_invariant(self) -> bool:
        return False  # a banned token may be the argmax

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if process_dict_updates(self.banned, batch_update, lambda params, _, __: (params.extra_args or {}).get(KEY) or None):
            rows = [row for row, ids in self.banned.items() for _ in ids]
            ids = [i for banned in self.banned.values() for i in banned]
            self.where = (torch.tensor(rows, device=self.device), torch.tensor(ids, device=self.device)) if rows else None

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if self.where is not None:
            logits[self.where] = float("-inf")
        return logits

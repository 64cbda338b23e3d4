"""Decoding pieces for the ``hf`` backend that ``transformers.generate`` lacks.

- ``TokenPicker`` (a logits processor): every row samples with its own seeded generator
  (Gumbel-max over the temperature- and nucleus-scaled distribution) or takes the argmax, and
  records the chosen token's log-probability under the *unscaled* distribution. Seeds per row
  make sampled answers independent of batch layout, order and resume (``generate``'s own
  sampling draws from one global generator for the whole batch).
- ``StopOnText`` (a stopping criterion): a row is done once its new text contains a stop string.

Both are built on first use, so importing this module never imports torch or transformers.
"""

from __future__ import annotations

from functools import cache


def token_picker(seeds: list[int | None], temperature: float, top_p: float, banned: list[int], vocab_limit: int | None):
    """Rows with a seed sample; rows with ``None`` take the argmax. ``banned`` ids and ids from
    ``vocab_limit`` on are never picked. ``.logprobs`` collects, per step, each row's chosen-token
    log-probability under the unscaled distribution."""
    return _classes()[0](seeds, temperature, top_p, banned, vocab_limit)


def stop_on_text(stops: tuple[str, ...], decode, prompt_width: int, prefix_ids: list[list[int]]):
    """Stop each row once ``decode(prefix + new tokens)`` past the prefix holds one of ``stops``."""
    return _classes()[1](stops, decode, prompt_width, prefix_ids)


@cache
def _classes():
    import torch
    from transformers import LogitsProcessor, StoppingCriteria

    class TokenPicker(LogitsProcessor):
        def __init__(self, seeds, temperature, top_p, banned, vocab_limit):
            self.generators = [None if s is None else torch.Generator().manual_seed(s) for s in seeds]
            self.temperature = temperature
            self.top_p = top_p
            self.banned = banned
            self.vocab_limit = vocab_limit
            self.logprobs: list = []

        def __call__(self, input_ids, scores):
            logp = torch.log_softmax(scores.float(), dim=-1)
            z = logp / self.temperature
            if self.banned:
                z[:, self.banned] = float("-inf")
            if self.vocab_limit is not None and self.vocab_limit < z.shape[-1]:
                z[:, self.vocab_limit :] = float("-inf")  # embedding rows with no token behind them
            if self.top_p < 1.0:
                probs, order = torch.softmax(z, dim=-1).sort(dim=-1, descending=True)
                outside = (probs.cumsum(dim=-1) - probs) > self.top_p  # the most likely token always stays
                z = z.masked_fill(torch.zeros_like(outside).scatter(1, order, outside), float("-inf"))
            vocab = scores.shape[-1]
            gumbel = torch.stack(
                [torch.zeros(vocab) if g is None else -torch.empty(vocab).exponential_(generator=g).clamp_min(1e-30).log() for g in self.generators]
            )
            choice = (z + gumbel.to(z.device)).argmax(dim=-1)  # argmax(z + Gumbel) samples; + 0 is greedy
            self.logprobs.append(logp.gather(1, choice[:, None]).squeeze(1).cpu())
            return torch.full_like(scores, float("-inf")).scatter(1, choice[:, None], 0.0)

    class StopOnText(StoppingCriteria):
        def __init__(self, stops, decode, prompt_width, prefix_ids):
            self.stops = stops
            self.decode = decode
            self.width = prompt_width
            self.prefix_ids = prefix_ids

        def __call__(self, input_ids, scores, **kwargs):
            new = input_ids[:, self.width :].tolist()
            done = [any(s in self.decode(p, row) for s in self.stops) for p, row in zip(self.prefix_ids, new, strict=True)]
            return torch.tensor(done, device=input_ids.device)

    return TokenPicker, StopOnText

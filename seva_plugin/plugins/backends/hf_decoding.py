"""Decoding pieces for the ``hf`` backend that ``transformers.generate`` lacks.

- ``TokenPicker`` (a logits processor): every row samples with its own seeded generator
  (Gumbel-max over the temperature- and nucleus-scaled distribution) or takes the argmax, and
  records the chosen token's log-probability under the *unscaled* distribution. Seeds per row
  make sampled answers independent of batch layout, order and resume (``generate``'s own
  sampling draws from one global generator for the whole batch).
- ``StopOnText`` (a stopping criterion): a row is done once its new text contains a stop string.

Both do per step only what the rule needs (CSR decodes hundreds of rows at once, where a Python
loop per row and token is most of a step's cost): a sampled token is checked against the nucleus
rather than the nucleus built (only rows whose winner falls outside sort, and then by *values*,
no index sort), the Gumbel noise comes from the generators' uniform draws, and a row's text is
decoded only after a token that can complete a stop string. Each gives exactly what the plain rule gives
(``tests/plugins/backends/test_hf_decoding.py``). Both are built on first use, so importing this
module never imports torch or transformers.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any


def token_picker(seeds: list[int | None], temperature: float, top_p: float, banned: list[int], vocab_limit: int | None):
    """Rows with a seed sample; rows with ``None`` take the argmax. ``banned`` ids and ids from
    ``vocab_limit`` on are never picked. ``.logprobs`` collects, per step, each row's chosen-token
    log-probability under the unscaled distribution."""
    return _classes()[0](seeds, temperature, top_p, banned, vocab_limit)


def stop_on_text(stops: tuple[str, ...], decode, prompt_width: int, prefix_ids: list[list[int]], may_stop=None, ended: Sequence[int] = ()):
    """Stop each row once ``decode(prefix + new tokens)`` past the prefix holds one of ``stops``.
    ``may_stop``: per token id, whether it can complete a stop (``Renderer.stop_candidates``), or None to decode every
    row at every step; ``ended``: the stop tokens (a row that ended needs no more decoding)."""
    return _classes()[1](stops, decode, prompt_width, prefix_ids, may_stop, ended)


def outside_nucleus(probs: Any, top_p: float) -> Any:
    """True where a token lies outside the nucleus: after a descending sort, where the mass before it
    exceeds ``top_p`` (the most likely token always stays).

    On the CPU the sorted values come from numpy (a values-only sort, many times faster than
    ``torch.sort`` with its indices); they and their cumulative sums are exactly ``torch.sort``'s, so
    where the kept positions form a prefix ending strictly above the next value, the nucleus is every
    token at or above that last kept value. Other rows (a tie at the boundary, whose order only the
    index sort fixes) take the index sort."""
    import numpy as np
    import torch

    if probs.device.type != "cpu":
        return sorted_outside(probs, top_p)
    values = torch.from_numpy(np.ascontiguousarray(np.sort(probs.numpy(), axis=-1)[:, ::-1]))
    outside = (values.cumsum(dim=-1) - values) > top_p
    kept = (~outside).sum(dim=-1)
    last = values.gather(1, (kept - 1)[:, None])
    following = values.gather(1, kept.clamp(max=values.shape[1] - 1)[:, None])
    prefix = ~(outside[:, :-1] & ~outside[:, 1:]).any(dim=-1)
    clean = prefix & ((kept == values.shape[1]) | (last > following).squeeze(1))
    mask = probs < last
    for row in (~clean).nonzero().flatten().tolist():
        mask[row] = sorted_outside(probs[row : row + 1], top_p)[0]
    return mask


def nucleus_argmax(z: Any, noise: Any, top_p: float) -> Any:
    """Each row's argmax of ``z + noise`` over the nucleus of ``softmax(z)`` at ``top_p``
    (``noise``: None for none): what masking the tokens outside the nucleus, then taking the argmax,
    gives.

    The argmax over all tokens is the nucleus' argmax whenever it lies inside the nucleus, which
    takes no sort to tell: a token is inside when the mass of the tokens above it is at most
    ``top_p``. That mass is summed here in another order than the rule's sorted cumulative sum, so
    a row whose mass lies within ``MARGIN`` of ``top_p`` (counting the tokens tied with the winner
    as above it), and a row whose winner lies outside, take the rule (:func:`outside_nucleus`).
    With top-p 0.9 and a flat distribution that is about one row in ten (on the CPU; elsewhere
    every row takes the rule)."""
    import torch

    scored = z if noise is None else z + noise
    choice = scored.argmax(dim=-1)
    if top_p >= 1.0:
        return choice
    probs = torch.softmax(z, dim=-1)
    if probs.device.type == "cpu":
        redo = (~surely_inside(probs, choice, top_p)).nonzero().flatten()
    else:  # MARGIN is reasoned for the CPU's cumsum; a GPU sorts fast: every row takes the rule
        redo = torch.arange(len(z), device=z.device)
    if len(redo):
        masked = z[redo].masked_fill_(outside_nucleus(probs[redo], top_p), float("-inf"))
        if noise is not None:
            masked.add_(noise[redo])
        choice[redo] = masked.argmax(dim=-1)
    return choice


# The rule's mass above a token is float32(a double cumulative sum) less the token (torch's CPU
# cumsum accumulates floats in double): a few float32 ulps (6e-8 near 1) from the exact sum. The
# bound here is summed in float32, under 1e-6 from it for sums up to 1: both far inside this margin.
MARGIN = 1e-5


def surely_inside(probs: Any, choice: Any, top_p: float) -> Any:
    """True where token ``choice`` of a row is inside its nucleus beyond doubt: the mass that can
    stand before it in a descending sort (the more likely tokens, and those tied with it, whose
    order only the index sort fixes) is below ``top_p`` by ``MARGIN``."""
    import torch

    p = probs.gather(1, choice[:, None])
    # sum over tokens at least as likely of (prob - p), plus p for each but the chosen one itself
    before = (probs - p).clamp_min_(0.0).sum(dim=-1) + p.squeeze(1) * ((probs >= p).sum(dim=-1) - 1)
    return before < float(torch.tensor(top_p, dtype=torch.float32)) - MARGIN


def sorted_outside(probs: Any, top_p: float) -> Any:
    """:func:`outside_nucleus` by the index sort: the rule itself."""
    import torch

    ordered, order = probs.sort(dim=-1, descending=True)
    outside = (ordered.cumsum(dim=-1) - ordered) > top_p
    return torch.zeros_like(outside).scatter(1, order, outside)


@cache
def _classes():
    import torch
    from transformers import LogitsProcessor, StoppingCriteria

    class TokenPicker(LogitsProcessor):
        def __init__(self, seeds, temperature, top_p, banned, vocab_limit):
            self.generators = [None if s is None else torch.Generator().manual_seed(s) for s in seeds]
            self.sampled = [i for i, g in enumerate(self.generators) if g is not None]
            self.temperature = temperature
            self.top_p = top_p
            self.banned = banned
            self.vocab_limit = vocab_limit
            self.logprobs: list = []
            self._uniform = None
            self._draws: list = []  # (row of _uniform, its generator) per sampled row
            self._bias = None

        def bias(self, vocab: int) -> Any:
            """0, or -inf at the ids never picked (``banned``, and from ``vocab_limit`` on: embedding rows with no token)."""
            if self._bias is None or self._bias.shape[0] != vocab:
                self._bias = torch.zeros(vocab)
                self._bias[self.banned] = float("-inf")
                if self.vocab_limit is not None:
                    self._bias[self.vocab_limit :] = float("-inf")
            return self._bias

        def gumbel(self, vocab: int) -> Any:
            """Each sampled row's Gumbel noise for this step, zeros for greedy rows.

            The noise is ``-log(Exponential(1))`` drawn from the row's own generator, ``vocab`` values a
            step. ``Tensor.exponential_`` on the CPU draws them one at a time as ``(float) -log1p(-u)``
            with ``u`` the generator's uniform doubles (ATen's ``transformation::exponential``); drawing
            ``u`` with ``uniform_`` and taking the logarithm over all rows at once gives the same values
            and leaves the generator in the same state, at a quarter of the cost."""
            if self._uniform is None or self._uniform.shape[1] != vocab:
                self._uniform = torch.zeros(len(self.generators), vocab, dtype=torch.float64)
                self._draws = [(self._uniform[i], self.generators[i]) for i in self.sampled]
            for row, generator in self._draws:
                row.uniform_(generator=generator)
            exponential = self._uniform.neg_().log1p_().neg_().float()  # in place: the next step draws over it
            noise = exponential.clamp_min_(1e-30).log_().neg_()
            if len(self.sampled) < len(self.generators):
                greedy = torch.ones(len(self.generators), dtype=torch.bool)
                greedy[self.sampled] = False
                noise[greedy] = 0.0
            return noise

        def __call__(self, input_ids, scores):
            logp = torch.log_softmax(scores.float(), dim=-1)
            bias = self.bias(scores.shape[-1]).to(logp.device)
            z = (logp if self.temperature == 1 else logp / self.temperature) + bias  # a new tensor: logp is kept for the log-probs
            noise = self.gumbel(scores.shape[-1]).to(z.device) if self.sampled else None  # argmax(z + Gumbel) samples; greedy rows get + 0
            choice = nucleus_argmax(z, noise, self.top_p)
            self.logprobs.append(logp.gather(1, choice[:, None]).squeeze(1).cpu())
            return torch.full_like(scores, float("-inf")).scatter(1, choice[:, None], 0.0)

    class StopOnText(StoppingCriteria):
        def __init__(self, stops, decode, prompt_width, prefix_ids, may_stop, ended):
            self.stops = stops
            self.decode = decode
            self.width = prompt_width
            self.prefix_ids = prefix_ids
            self.may_stop = None if may_stop is None else torch.tensor(may_stop, dtype=torch.bool)
            self.ended = torch.tensor(list(ended), dtype=torch.long)
            self.done = torch.zeros(len(prefix_ids), dtype=torch.bool)

        def __call__(self, input_ids, scores, **kwargs):
            last = input_ids[:, -1].cpu()
            self.done |= torch.isin(last, self.ended)  # ended by a stop token: generate stops it, and its text no longer grows
            check = ~self.done
            if self.may_stop is not None:
                known = last < len(self.may_stop)
                check &= ~known | self.may_stop[last.clamp(max=len(self.may_stop) - 1)]
            for row in check.nonzero().flatten().tolist():
                new = input_ids[row, self.width :].tolist()
                if any(s in self.decode(self.prefix_ids[row], new) for s in self.stops):
                    self.done[row] = True
            return self.done.clone().to(input_ids.device)

    return TokenPicker, StopOnText

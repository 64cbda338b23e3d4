"""Decoding pieces for the ``vllm`` backend: a contract request's ``SamplingParams``, and one vLLM
output read back as an answer by the rule every backend shares (``rendering.cut_answer``)."""

from __future__ import annotations

from typing import Any

from seva_plugin.interfaces import GenerationRequest, Sampling
from seva_plugin.pipeline.views import sample_seed
from seva_plugin.plugins.backends.rendering import Renderer, cut_answer

BANNED_BIAS = -100.0  # vLLM's strongest logit bias: a banned token's probability is then below e^-100 of the best one's


def sampling_params(
    request: GenerationRequest,
    k: int,
    max_new_tokens: int,
    sampling: Sampling | None,
    stops: tuple[str, ...],
    logprobs: bool,
    eos: list[int],
    banned: tuple[list[int], list[int]],
):
    """vLLM's parameters for answer ``k`` of ``request``: greedy without ``sampling``, else seeded by
    ``sample_seed(request seed, k)``. ``banned`` is (special ids, embedding rows with no token):
    sampling picks neither, as in ``hf``; greedy decoding with log-probabilities skips the rows."""
    from vllm import SamplingParams

    kwargs: dict[str, Any] = dict(
        n=1,
        max_tokens=max_new_tokens,
        stop_token_ids=list(eos),
        stop=list(stops) or None,
        include_stop_str_in_output=True,
        detokenize=bool(stops),  # texts are decoded by the backend, from the ids; vLLM's text only finds stop strings
        logprobs=0 if logprobs else None,  # the chosen token's own log-probability (raw: the unscaled model)
        skip_special_tokens=True,
    )
    if sampling is None:
        kwargs.update(temperature=0.0)
    else:
        kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, seed=sample_seed(request.sampling_seed, k))
    special, phantom = banned
    ids = special + phantom if sampling is not None else (phantom if logprobs else [])
    if ids:
        kwargs["logit_bias"] = dict.fromkeys(ids, BANNED_BIAS)
    return SamplingParams(**kwargs)


def read_answer(output, eos: set[int], stops: tuple[str, ...], renderer: Renderer, prefix: list[int]):
    """``(text, finish reason, log-probs, token ids)`` of one vLLM answer, by ``hf``'s rule: cut at the
    first end-of-sequence token (kept in ids and log-probs, not in the text) or right after the
    first stop string."""
    row = list(output.token_ids)
    logprobs = [entry[token].logprob for entry, token in zip(output.logprobs, row, strict=True)] if output.logprobs else []
    text, reason, logprobs, row = cut_answer(row, logprobs, eos, stops, renderer, prefix)
    if reason == "length" and output.finish_reason != "length":  # vLLM ended it itself
        reason = "stop" if isinstance(output.stop_reason, str) else "eos"
    return text, reason, logprobs, row

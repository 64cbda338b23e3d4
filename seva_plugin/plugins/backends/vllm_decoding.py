"""Decoding pieces for the ``vllm`` backend: a contract request's ``SamplingParams``, one vLLM output
read back as a completion by the rule every backend shares (``Renderer.completion``), and scoring
through vLLM's prompt log-probabilities."""

from __future__ import annotations

from typing import Any

from seva_plugin.contract import Completion, GenerationRequest, Sampling
from seva_plugin.pipeline.views import sample_seed
from seva_plugin.rendering import Renderer

BANNED_BIAS = -100.0  # vLLM's strongest logit bias, added before the temperature (at most 2) divides: odds below e^-50
MAX_TEMPERATURE = 2.0  # vLLM's SamplingParams refuses more


def sampling_params(
    request: GenerationRequest,
    k: int,
    max_new_tokens: int,
    sampling: Sampling | None,
    stops: tuple[str, ...],
    logprobs: bool,
    eos: list[int],
    banned: tuple[list[int], list[int]],
) -> Any:
    """vLLM's parameters for answer ``k`` of ``request``: greedy without ``sampling``, else seeded by
    ``sample_seed(request seed, k)``. ``banned`` is (special ids, embedding rows with no token):
    sampling picks neither, as in ``hf``; greedy decoding with log-probabilities skips the rows.
    Only the template's stop tokens end an answer: ``ignore_eos`` keeps vLLM from also stopping at
    the tokenizer's end-of-sequence token and at the ``eos_token_id`` of ``generation_config.json``
    (which vLLM reads even with ``generation_config="vllm"``)."""
    from vllm import SamplingParams

    kwargs: dict[str, Any] = dict(
        n=1,
        max_tokens=max_new_tokens,
        ignore_eos=True,
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


def read_completion(output: Any, stops: tuple[str, ...], renderer: Renderer, prefix: list[int], logprobs: bool) -> Completion:
    """One vLLM answer by ``hf``'s rule: cut at the first stop token (kept in ids and log-probs, not in
    the text) or right after the first stop string."""
    row = list(output.token_ids)
    values = [entry[token].logprob for entry, token in zip(output.logprobs, row, strict=True)] if logprobs and output.logprobs else None
    done = renderer.completion(row, values if logprobs else None, stops, prefix)
    if done.finish_reason == "length" and output.finish_reason != "length":  # vLLM ended it itself
        return Completion(done.text, "stop" if isinstance(output.stop_reason, str) else "eos", done.token_ids, done.logprobs)
    return done


def score_params() -> Any:
    """Teacher forcing: the raw log-probability of every prompt token (its own only), one throwaway
    greedy token; prompt log-probabilities never read vLLM's prefix cache."""
    from vllm import SamplingParams

    return SamplingParams(n=1, max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False, ignore_eos=True)


def read_scores(output: Any, text_ids: list[int]) -> list[float]:
    """The log-probabilities of the prompt's last ``len(text_ids)`` tokens (the scored text)."""
    if not text_ids:
        return []
    entries = output.prompt_logprobs[-len(text_ids) :]
    if list(output.prompt_token_ids[-len(text_ids) :]) != text_ids:
        raise RuntimeError("vLLM's prompt does not end with the scored text's tokens")
    return [float(entry[token].logprob) for entry, token in zip(entries, text_ids, strict=True)]

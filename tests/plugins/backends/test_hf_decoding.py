"""The ``hf`` backend's faster decoding pieces give exactly what the plain rules give.

- the nucleus from numpy's values-only sort against ``torch.sort`` with its indices (ties included);
- the sampled token from the winner-first check against the argmax over the masked nucleus;
- the Gumbel noise from uniform draws against ``Tensor.exponential_`` (values and generator state);
- the stop check only after candidate tokens against decoding every row at every step;
- the shared prefill (one per request, its cache repeated for the n answers) against each row's own.
"""

from __future__ import annotations

import random

import pytest

from seva_plugin.plugins.backends import hf_decoding, hf_prompt_cache

torch = pytest.importorskip("torch")


def test_the_nucleus_from_sorted_values_is_the_index_sorts():
    gen = torch.Generator().manual_seed(0)
    for top_p in (0.1, 0.5, 0.9, 0.999):
        for scale in (0.5, 3.0, 12.0):
            probs = torch.softmax(scale * torch.randn(64, 300, generator=gen), dim=-1)
            assert torch.equal(hf_decoding.outside_nucleus(probs, top_p), hf_decoding.sorted_outside(probs, top_p))


def test_a_tie_at_the_nucleus_boundary_takes_the_index_sort():
    # four equal tokens of 0.2 and two of 0.1: with top_p 0.5 the nucleus ends inside the tie
    probs = torch.tensor([[0.1, 0.2, 0.2, 0.1, 0.2, 0.2], [0.05, 0.6, 0.05, 0.1, 0.1, 0.1]])
    fast, plain = hf_decoding.outside_nucleus(probs, 0.5), hf_decoding.sorted_outside(probs, 0.5)
    assert torch.equal(fast, plain)
    assert 0 < int((~fast[0]).sum()) < 4  # some, not all, of the tied tokens are kept: only the index order says which


def masked_argmax(z, noise, top_p):
    """The rule: tokens outside the nucleus (index sort) masked, then the argmax of z + noise."""
    masked = z.masked_fill(hf_decoding.sorted_outside(torch.softmax(z, dim=-1), top_p), float("-inf"))
    return (masked if noise is None else masked + noise).argmax(dim=-1)


def test_the_winner_first_nucleus_argmax_is_the_masked_argmax():
    gen = torch.Generator().manual_seed(1)
    redone = 0
    for top_p in (0.1, 0.5, 0.9, 0.999, 1.0):
        for scale in (0.3, 3.0, 12.0):
            z = torch.log_softmax(scale * torch.randn(96, 400, generator=gen), dim=-1)
            noise = -torch.empty(96, 400).exponential_(generator=gen).log()
            noise[::4] = 0.0  # greedy rows in a sampled batch
            for n in (noise, None):
                assert torch.equal(hf_decoding.nucleus_argmax(z, n, top_p), masked_argmax(z, n, top_p))
            if top_p < 1.0:
                winners = (z + noise).argmax(dim=-1)
                redone += int((~hf_decoding.surely_inside(torch.softmax(z, dim=-1), winners, top_p)).sum())
    assert redone > 0  # rows whose winner lies outside took the rule, and still matched


def test_a_winner_tied_or_at_the_margin_takes_the_rule():
    probs = torch.tensor([[0.2, 0.2, 0.2, 0.2, 0.1, 0.1], [0.5, 0.4, 0.1, 0.0, 0.0, 0.0]])
    z = probs.log()
    # row 0: token 3 ties three others, and where it stands among them decides; row 1: token 2 has
    # exactly top_p above it
    assert not hf_decoding.surely_inside(probs, torch.tensor([3, 2]), 0.5)[0]
    assert not hf_decoding.surely_inside(probs, torch.tensor([3, 2]), 0.9)[1]
    assert hf_decoding.surely_inside(probs, torch.tensor([1, 1]), 0.9).tolist() == [True, True]
    for winner in range(4):
        noise = torch.zeros(2, 6)
        noise[:, winner] = 5.0
        for top_p in (0.5, 0.9):
            assert torch.equal(hf_decoding.nucleus_argmax(z, noise, top_p), masked_argmax(z, noise, top_p))


def test_gumbel_noise_is_what_exponential_draws():
    seeds = [3, None, 11, 2**62 + 5]
    picker = hf_decoding.token_picker(seeds, 1.0, 0.9, [], None)
    for _ in range(3):  # several steps: each continues the generators where the last one left them
        noise = picker.gumbel(1000)
        for row, seed in enumerate(seeds):
            if seed is None:
                assert torch.equal(noise[row], torch.zeros(1000))
    reference = {s: torch.Generator().manual_seed(s) for s in seeds if s is not None}
    picker = hf_decoding.token_picker(seeds, 1.0, 0.9, [], None)
    for _ in range(3):
        noise = picker.gumbel(1000)
        for row, seed in enumerate(seeds):
            if seed is not None:
                expected = -torch.empty(1000).exponential_(generator=reference[seed]).clamp_min(1e-30).log()
                assert torch.equal(noise[row], expected)
    for row, seed in enumerate(seeds):
        if seed is not None:
            assert torch.equal(picker.generators[row].get_state(), reference[seed].get_state())


def test_stop_candidates_hold_every_token_that_can_complete_a_stop(tiny_llava):
    from seva_plugin.plugins.backends.hf import HfBackend

    backend = HfBackend(model=tiny_llava, template="llava")
    renderer = backend.renderer
    assert renderer.stop_candidates(("é",)) is None  # a non-ASCII stop: every row is checked
    may_stop = renderer.stop_candidates((".", "ab"))
    vocab = len(renderer.tokenizer)
    assert len(may_stop) == vocab and 0 < sum(may_stop) < vocab
    # random rows, decoded at every step by the plain rule, stop exactly where the filtered check stops them
    rng = random.Random(0)
    dots = [i for i in range(vocab) if "." in renderer.tokenizer.decode([i])]
    rows = [[rng.choice(dots) if rng.random() < 0.05 else rng.randrange(vocab) for _ in range(30)] for _ in range(40)]
    prefixes = [renderer.answer_ids(rng.choice(["", "A cat", "It is a"])) for _ in rows]
    eos = renderer.stop_token_ids
    fast = hf_decoding.stop_on_text((".", "ab"), renderer.continuation, 0, prefixes, may_stop, eos)
    plain = hf_decoding.stop_on_text((".", "ab"), renderer.continuation, 0, prefixes)
    stopped = 0
    for step in range(1, 31):
        ids = torch.tensor([row[:step] for row in rows])
        expected = plain(ids, None)
        ended = torch.tensor([any(t in eos for t in row[:step]) for row in rows])
        got = fast(ids, None)
        assert torch.equal(got & ~ended, expected & ~ended), step  # rows that ended at a stop token are done either way
        stopped += int(expected.sum())
    assert stopped > 0


def test_the_shared_prefill_gives_each_rows_own_answers(tiny_llava, tmp_path):
    """Requests of 1 to 5 answers, with and without prefixes and stops: the same tokens and texts as when
    every row is prefilled on its own; log-probabilities to float rounding."""
    from PIL import Image

    from helpers import make_images
    from seva_plugin.contract import GenerationRequest, Sampling
    from seva_plugin.pipeline.records import LoadedRecord, PromptRecord
    from seva_plugin.pipeline.views import record_seed
    from seva_plugin.plugins.backends.hf import HfBackend

    names = make_images(tmp_path, 4)
    records = [
        LoadedRecord(PromptRecord(f"p{i}", "<image>" + q, [str(tmp_path / n)]), [Image.open(tmp_path / n).convert("RGB")], record_seed(0, f"p{i}"))
        for i, (n, q) in enumerate(zip(names, ["Describe it.", "What colour is the square?", "Where?", "Name it."], strict=True))
    ]
    requests = [
        GenerationRequest(r, prefix=p, n=n, stop=s, max_new_tokens=12, sampling=Sampling(1.0, 0.9), seed=7 + i, logprobs=True)
        for i, (r, p, n, s) in enumerate(zip(records, ["", "A red", "It is", ""], [5, 1, 3, 5], [(".",), ("e",), (".",), ()], strict=True))
    ]
    backend = HfBackend(model=tiny_llava, template="llava")
    assert backend._shares_prefill(requests) and not backend._shares_prefill([GenerationRequest(records[0])])
    shared = backend.generate(requests)
    backend.share_prompt_cache = False
    plain = backend.generate(requests)
    assert [[(c.text, c.finish_reason, c.token_ids) for c in a] for a in shared] == [[(c.text, c.finish_reason, c.token_ids) for c in a] for a in plain]
    pairs = [(c, d) for a, b in zip(shared, plain, strict=True) for c, d in zip(a, b, strict=True)]
    assert max(abs(x - y) for c, d in pairs for x, y in zip(c.logprobs, d.logprobs, strict=True)) < 1e-5
    assert any(c.finish_reason == "stop" for a in plain for c in a)


def test_the_shared_prefill_is_for_families_whose_positions_come_from_the_mask():
    assert hf_prompt_cache.applies("llava", [5, 5]) and hf_prompt_cache.applies("internvl", [1, 2])
    assert not hf_prompt_cache.applies("llava", [1, 1])  # one answer a request: nothing to share
    for family in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "gemma3", None):
        assert not hf_prompt_cache.applies(family, [5])

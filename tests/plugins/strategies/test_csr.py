"""Strategy ``csr``: sentence-level candidate search with a tiny offline LLaVA and a tiny CLIP.

Scores are recomputed independently (a teacher-forced forward pass for the language score, a
plain CLIPModel forward for the visual score), and the pair choice is checked in both modes.
"""

from __future__ import annotations

import json
import math

import pytest

from helpers import make_images, read_jsonl
from seva_plugin.errors import ConfigError
from seva_plugin.plugins.strategies.csr.scoring import Candidate, Step, paper_reward, prune, rank_score, select_pair, sibling_ranks
from seva_plugin.registry import get_registry

torch = pytest.importorskip("torch")

# Small search: 3 proposals per path, 1 best + 2 worst survive, 5-token sentences, 40-char answers.
SMALL = {"num_proposals": 3, "max_sentence_tokens": 5, "max_response_chars": 40}


@pytest.fixture(scope="module")
def backend(tiny_llava):
    from seva_plugin.plugins.backends.hf import HfBackend

    b = HfBackend(model=tiny_llava, template="llava", batch_size=4)
    b.hf_model  # noqa: B018 - load once for the module
    return b


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    from PIL import Image

    from seva_plugin.pipeline.records import LoadedRecord, PromptRecord
    from seva_plugin.pipeline.views import record_seed

    folder = tmp_path_factory.mktemp("csr_images")
    out = []
    for i, (name, question) in enumerate(zip(make_images(folder, 2), ["Describe the image.", "What colour is the square?"], strict=True)):
        path = str(folder / name)
        record = PromptRecord(f"q{i}", "<image>" + question, [path])
        out.append(LoadedRecord(record, [Image.open(path).convert("RGB")], record_seed(0, record.id)))
    return out


def csr(tiny_clip, **params):
    return get_registry().get("strategy", "csr").build({"clip_model": tiny_clip, **SMALL, **params}, "strategy")


@pytest.fixture(scope="module")
def paper_search(tiny_clip, backend, records):
    strategy = csr(tiny_clip, mode="paper")
    return strategy, strategy.search(records, backend)


# --------------------------------------------------------------------------- #
# registry and config
# --------------------------------------------------------------------------- #
def test_csr_is_registered_with_official_defaults():
    component = get_registry().get("strategy", "csr")
    assert component.plugin == "seva_plugin.plugins.strategies.csr.strategy"
    params = component.params()
    assert params["clip_model"] == "openai/clip-vit-large-patch14-336"
    assert params["mode"] == "paper"
    assert params["clip_alpha"] == 0.9
    assert (params["num_proposals"], params["keep_best"], params["keep_worst"]) == (5, 1, 2)
    assert (params["sentence_end"], params["max_sentence_tokens"], params["max_response_chars"]) == (".", 70, 1024)


def test_config_is_validated_before_any_model_loads(tiny_clip, tmp_path, monkeypatch):
    component = get_registry().get("strategy", "csr")
    with pytest.raises(ConfigError, match="unknown key 'beams'"):
        component.build({"beams": 5}, "strategy")
    with pytest.raises(ConfigError, match="mode must be one of paper, repo"):
        component.build({"clip_model": tiny_clip, "mode": "rank"}, "strategy")
    with pytest.raises(ConfigError, match="reward_lambda must be in"):
        component.build({"clip_model": tiny_clip, "reward_lambda": 1.5}, "strategy")
    with pytest.raises(ConfigError, match="clip_model: model path not found"):
        component.build({"clip_model": str(tmp_path / "nope")}, "strategy")
    with pytest.raises(ConfigError, match="'num_proposals' must be an integer"):
        component.build({"clip_model": tiny_clip, "num_proposals": "5"}, "strategy")
    hub_ids = []  # the hub id default goes through the hub rule (cache, or a hub that answers: test_guarantees.py)
    monkeypatch.setattr("seva_plugin.pipeline.model_paths.check_hub_id", lambda repo_id, key: hub_ids.append((repo_id, key)))
    component.build({}, "strategy")
    assert hub_ids == [("openai/clip-vit-large-patch14-336", "strategy.clip_model")]


def test_each_strategy_owns_its_clip_scorer(tiny_clip):
    """The scorer was a module singleton whose batch_size the last strategy built overwrote."""
    first, second = csr(tiny_clip, clip_batch_size=64), csr(tiny_clip, clip_batch_size=2)
    assert first.clip is not second.clip and first.clip is first.clip
    assert (first.clip.batch_size, second.clip.batch_size) == (64, 2)


# --------------------------------------------------------------------------- #
# the scoring rules on their own
# --------------------------------------------------------------------------- #
def test_sibling_ranks_follow_the_official_rule():
    # sorted best first, rank = (position + 1) / n; ties keep their order
    assert sibling_ranks([0.1, 0.9, 0.5]) == [1.0, 1 / 3, 2 / 3]
    assert sibling_ranks([2.0, 2.0]) == [0.5, 1.0]


def test_rank_score_and_paper_reward():
    steps = [Step("a", language=-1.0, visual=20.0, rank_language=0.2, rank_visual=0.6), Step("b", -3.0, 10.0, 1.0, 0.2)]
    assert paper_reward(steps, 0.9) == pytest.approx((0.9 * 20 + 0.1 * -1) + (0.9 * 10 + 0.1 * -3))
    assert paper_reward(steps, 0.9, "mean") == pytest.approx(paper_reward(steps, 0.9) / 2)
    # official: sum over steps of (1 - alpha) * rank_T + alpha * rank_C, over len(path) with the root
    assert rank_score(steps, 0.9) == pytest.approx(((0.1 * 0.2 + 0.9 * 0.6) + (0.1 * 1.0 + 0.9 * 0.2)) / 3)


def test_prune_keeps_best_and_worst():
    assert prune([5, 1, 4, 2, 3], key=lambda x: x, keep_best=1, keep_worst=2) == [5, 2, 1]
    assert prune([5, 1, 3], key=lambda x: x, keep_best=1, keep_worst=2) == [5, 1, 3]


def test_select_pair_in_both_modes_and_without_a_second_answer():
    good = Candidate("good", [Step("good", -0.5, 30.0, 1 / 3, 1 / 3)], order=0)
    fluent = Candidate("fluent", [Step("fluent", -0.1, 5.0, 1 / 3, 2 / 3)], order=1)
    bad = Candidate("bad", [Step("bad", -2.0, 1.0, 1.0, 1.0)], order=2)
    assert select_pair([fluent, good, bad], "paper", lam=0.9, alpha=0.9) == (good, bad)
    assert select_pair([fluent, good, bad], "repo", lam=0.9, alpha=0.9) == (good, bad)
    # lambda = 0: the language score alone decides
    assert select_pair([fluent, good, bad], "paper", lam=0.0, alpha=0.9) == (fluent, bad)
    same = Candidate("good", [Step("good", -9.0, 0.0)], order=3)
    assert select_pair([good, same], "paper", 0.9, 0.9) is None  # identical texts make no pair


def test_parse_row_and_degenerate_sentences():
    from seva_plugin.interfaces import Completion
    from seva_plugin.plugins.strategies.csr.search import degenerate, proposals

    props = proposals(
        [Completion(" A cat.", "stop", [5, 9], [-1.0, -3.0]), Completion("", "eos", [2], [-2.0]), Completion(" Dog", "length", [6, 7], [-1.0, -1.0])]
    )
    assert [(p.text, p.ended, p.language, p.tokens, p.index) for p in props] == [
        (" A cat.", "stop", -2.0, (5, 9), 0),
        ("", "eos", -2.0, (2,), 1),
        (" Dog", "length", -1.0, (6, 7), 2),
    ]
    assert degenerate("the the the the the the cat")
    assert degenerate("wow!!!!!!!!!!!")
    assert not degenerate("A red square on a white background.")


# --------------------------------------------------------------------------- #
# the search with real models
# --------------------------------------------------------------------------- #
def test_language_score_is_the_models_own_log_probability(paper_search, backend, records):
    """Recompute each sentence's score with one teacher-forced forward pass over the prompt, the
    path so far (as the backend tokenizes an answer prefix) and the sentence's own tokens."""
    strategy, results = paper_search
    model, renderer = backend.hf_model, backend.renderer
    checked = 0
    for loaded, result in zip(records, results, strict=True):
        prompt = renderer.prompt_ids(loaded.record.prompt, loaded.images)
        mm = renderer.mm_inputs([loaded.images], [prompt])
        candidate = max(result.candidates, key=lambda c: len(c.steps))
        prefix_text = ""
        for step in candidate.steps:
            prefix = prompt + renderer.answer_ids(prefix_text)
            with torch.no_grad():
                logits = model(**backend.batch_inputs([prefix + list(step.tokens)], mm)).logits[0].float()
            logp = torch.log_softmax(logits, dim=-1)
            expected = sum(float(logp[len(prefix) - 1 + j, t]) for j, t in enumerate(step.tokens)) / len(step.tokens)
            assert step.language == pytest.approx(expected, abs=1e-3)
            sentence = renderer.continuation(renderer.answer_ids(prefix_text), list(step.tokens))
            prefix_text += sentence[: sentence.index(".") + 1] if "." in sentence else sentence  # cut after the stop, as the backend does
            checked += 1
    assert checked >= 2


def test_visual_score_is_100_times_clip_cosine(paper_search, records, tiny_clip):
    from transformers import CLIPModel, CLIPProcessor

    _, results = paper_search
    model, processor = CLIPModel.from_pretrained(tiny_clip), CLIPProcessor.from_pretrained(tiny_clip)
    for loaded, result in zip(records, results, strict=True):
        step = result.candidates[0].steps[-1]
        inputs = processor(text=[step.text], images=loaded.images, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model(**inputs)
        cos = torch.nn.functional.cosine_similarity(out.image_embeds, out.text_embeds).item()
        assert step.visual == pytest.approx(100 * cos, abs=1e-3)


def test_search_shape_ranks_and_budget(paper_search):
    strategy, results = paper_search
    for result in results:
        assert len(result.candidates) >= 2
        assert result.stats["proposals"] <= strategy.num_proposals * (1 + 3 * (result.stats["depth"] - 1))
        for cand in result.candidates:
            assert 1 <= len(cand.steps) and len(cand.text) <= 40 + 60  # the cap ends the path at the sentence that crosses it
            for step in cand.steps:
                assert 1 <= len(step.tokens) <= strategy.max_sentence_tokens
                assert len(step.text) >= strategy.min_sentence_chars
                assert 0 < step.rank_language <= 1 and 0 < step.rank_visual <= 1
                assert math.isfinite(step.language) and step.language < 0


def test_paper_and_repo_modes_order_the_same_candidates_as_specified(paper_search):
    strategy, results = paper_search
    for result in results:
        cands = result.candidates
        rewards = [paper_reward(c.steps, strategy.reward_lambda) for c in cands]
        ranks = [rank_score(c.steps, strategy.clip_alpha) for c in cands]
        chosen, rejected = select_pair(cands, "paper", strategy.reward_lambda, strategy.clip_alpha)
        assert paper_reward(chosen.steps, strategy.reward_lambda) == max(rewards)
        assert paper_reward(rejected.steps, strategy.reward_lambda) == min(r for c, r in zip(cands, rewards, strict=True) if c.text != chosen.text)
        r_chosen, r_rejected = select_pair(cands, "repo", strategy.reward_lambda, strategy.clip_alpha)
        assert rank_score(r_chosen.steps, strategy.clip_alpha) == min(ranks)
        assert rank_score(r_rejected.steps, strategy.clip_alpha) == max(r for c, r in zip(cands, ranks, strict=True) if c.text != r_chosen.text)
        # each mode's choice is best by its own measure
        assert paper_reward(chosen.steps, strategy.reward_lambda) >= paper_reward(r_chosen.steps, strategy.reward_lambda)
        assert rank_score(r_chosen.steps, strategy.clip_alpha) <= rank_score(chosen.steps, strategy.clip_alpha)


@pytest.mark.parametrize("mode", ["paper", "repo"])
def test_make_pairs_scores_in_both_modes(mode, tiny_clip, backend, records):
    strategy = csr(tiny_clip, mode=mode)
    pairs = strategy.make_pairs(records, backend, None)
    assert len(pairs) == len(records)
    keys = None
    for pair in pairs:
        assert pair.chosen != pair.rejected
        s = pair.scores
        assert s["method"] == "csr" and s["mode"] == mode
        shape = {k: sorted(v) if isinstance(v, dict) else type(v).__name__ for k, v in s.items()}
        assert keys is None or shape == keys  # one schema for every record (datasets infers it)
        keys = shape
        for side in ("chosen", "rejected"):
            d = s[side]
            lam = strategy.reward_lambda
            recomputed = sum(lam * v + (1 - lam) * t for v, t in zip(d["visual_steps"], d["language_steps"], strict=True))
            assert d["reward"] == pytest.approx(recomputed, abs=1e-4)
            assert d["sentences"] == len(d["language_steps"]) == len(d["visual_steps"])
        if mode == "paper":
            assert s["chosen"]["reward"] >= s["rejected"]["reward"]
        else:
            assert s["chosen"]["rank_score"] <= s["rejected"]["rank_score"]
        assert s["search"]["candidates"] >= 2 and s["search"]["generated_tokens"] > 0
        json.dumps(s, allow_nan=False)  # strict JSON: datasets cannot read NaN back


def test_search_does_not_depend_on_the_batch(tiny_clip, backend, records, paper_search):
    """Each proposal has its own seeded generator: a record alone gives the same candidates."""
    strategy, together = paper_search
    alone = csr(tiny_clip, mode="paper").search(records[1:], backend)
    assert [c.text for c in alone[0].candidates] == [c.text for c in together[1].candidates]


def test_sentences_end_at_the_sentence_end_character(tiny_clip, backend, records):
    """With a frequent end character ('e') sentences stop right after its first occurrence."""
    strategy = csr(tiny_clip, sentence_end="e", max_sentence_tokens=8, max_response_chars=30)
    stopped = 0
    for result in strategy.search(records[:1], backend):
        for cand in result.candidates:
            for step in cand.steps:
                assert "e" not in step.text[:-1]  # nothing after the first end character
                stopped += step.text.endswith("e")
    assert stopped > 0


def test_seva_build_with_csr_writes_scored_pairs(build_config, tiny_clip, tmp_path):
    import datasets

    from seva_plugin.pipeline.build import build

    config = {
        **build_config,
        "strategy": {"name": "csr", "clip_model": tiny_clip, **SMALL},
        "limit": 3,
        "output": {**build_config["output"], "name": "csr_test"},
    }
    result = build(config, progress=False)
    rows = read_jsonl(result.data_file)
    assert result.kept == len(rows) == 3
    assert all(r["provenance"]["strategy"] == "csr" and r["chosen"]["value"] != r["rejected"]["value"] for r in rows)
    manifest = json.load(open(result.manifest_file))
    assert manifest["config"]["strategy"]["name"] == "csr"
    # the file (with its nested scores) loads the way LLaMA-Factory loads it
    ds = datasets.load_dataset("json", data_files=result.data_file, split="train")
    assert ds.num_rows == 3 and ds[0]["scores"]["chosen"]["reward"] == rows[0]["scores"]["chosen"]["reward"]

"""Strategy ``rlaifv``: the official prompts, parsing and pairing rules on their own, then the strategy with
the tiny LLaVA whose answers hold sentences and whose probes lean "No" (``feedback_llava``): every
probability recomputed with a plain forward pass, the model-written claims and questions asked
through the official prompts, and pairs that never depend on the batch."""

from __future__ import annotations

import math

import pytest

from helpers import make_images
from seva_plugin.errors import ConfigError
from seva_plugin.interfaces import CLEAN
from seva_plugin.pipeline.records import LoadedRecord, PromptRecord
from seva_plugin.pipeline.views import record_seed
from seva_plugin.plugins.strategies.rlaifv import prompts as P
from seva_plugin.plugins.strategies.rlaifv.pairing import Judged, balanced_ratio, candidate_pairs, pick, shortened_too_much
from seva_plugin.registry import get_registry

torch = pytest.importorskip("torch")

SMALL = {"num_samples": 4, "max_new_tokens": 16, "feedback_max_new_tokens": 16, "claims": "sentences", "questions": "template"}


def rlaifv(**params):
    return get_registry().get("strategy", "rlaifv").build(params, "strategy")


# -- prompts and parsing ------------------------------------------------------------------------
def test_registered_with_the_official_values():
    s = rlaifv()
    assert (s.num_samples, s.temperature, s.top_p, s.max_new_tokens) == (10, 0.7, 1.0, 512)
    assert (s.claims, s.questions, s.feedback_temperature, s.feedback_top_p, s.feedback_max_new_tokens) == ("model", "model", 0.2, 0.9, 256)
    assert (s.yes_words, s.no_words, s.min_score_gap, s.max_shorten_ratio) == (["yes", "Yes"], ["no", "No"], 1, None)
    assert s.needs_score and s.needs_question and not s.uses_augmenter


def test_bad_config_is_refused():
    with pytest.raises(ConfigError, match="strategy.claims must be one of model, sentences"):
        rlaifv(claims="llama3")
    with pytest.raises(ConfigError, match="num_samples must be at least 2"):
        rlaifv(num_samples=1)
    with pytest.raises(ConfigError, match="temperature must be positive to sample"):
        rlaifv(temperature=0.0)
    with pytest.raises(ConfigError, match="yes_words must be a non-empty list"):
        rlaifv(yes_words=[])
    with pytest.raises(ConfigError, match=r"max_shorten_ratio must be in \[0, 1\]"):
        rlaifv(max_shorten_ratio=2.0)
    with pytest.raises(ConfigError, match="strategy.feedback.top_p must be in"):
        rlaifv(feedback_top_p=0.0)


def test_divide_prompt_is_the_official_one_cut_to_300_words():
    short = P.divide_prompt("What is it?", "A red square. It is big.")
    assert short.startswith("You are an expert in extracting facts from the given question-answer pair for an image.")
    assert "### Facts:\n- {Extracted fact 1}\n- {Extracted fact 2}\n- ...\n\n### Question-answer pair:\n" in short
    assert short.endswith("Question: What is it?\nAnswer: A red square. It is big.")
    long = P.divide_prompt("What is it?", "word " * 500)
    assert len(long.split(" ")) == 300 and long.startswith(P.DIVIDE_PROMPT)


def test_to_question_prompt_lists_each_claim():
    text = P.to_question_prompt(["There is a cat.", "The cat is black."])
    assert text.startswith("You are an expert at modifying a given declarative sentence into a general question sentence.")
    assert text.endswith("### Declarative sentences:\n- There is a cat.\n\n- The cat is black.\n")


def test_parse_list_is_get_facts():
    out = "### Facts:\n- There is a cat.\n\n-The cat is black.\n*  A mat\n-\n### end"
    assert P.parse_list(out) == ["There is a cat.", "The cat is black.", "A mat"]
    assert P.sentences("A cat. It is black!  Is it? yes\nNew line") == ["A cat.", "It is black!", "Is it?", "yes", "New line"]
    assert P.probe(P.template_question("A cat.")) == 'Is the following statement about the image true? "A cat." Please answer yes or no.'


# -- scores and pairs ---------------------------------------------------------------------------
def judged(index: int, text: str, verdicts: list[bool]) -> Judged:
    n = len(verdicts)
    return Judged(index, text, [f"c{k}" for k in range(n)], [f"q{k}" for k in range(n)], [0.6 if v else 0.2 for v in verdicts], [0.3] * n)


def test_an_answers_score_is_minus_its_rejected_claims():
    j = Judged(0, "x", ["a", "b", "c"], ["qa", "qb", "qc"], p_yes=[0.5, 0.1, 0.3], p_no=[0.4, 0.2, 0.3])
    assert j.accepted == [True, False, False]  # a tie is not accepted: P(yes) must exceed P(no)
    assert j.score == -2
    assert j.describe()["score"] == -2 and j.describe()["words"] == 1


def test_candidate_pairs_follow_the_official_rule():
    a = judged(0, "one two three", [True, True])  # 0
    b = judged(1, "one two", [True, False])  # -1
    c = judged(2, "one", [False, False])  # -2
    d = judged(3, "four", [True])  # 0: ties a, makes no pair with it
    pairs = candidate_pairs([a, b, c, d])
    assert [(x.index, y.index) for x, y in pairs] == [(0, 1), (0, 2), (1, 2), (3, 1), (3, 2)]  # higher score chosen, sample order
    assert [(x.index, y.index) for x, y in candidate_pairs([a, b, c, d], diff=2)] == [(0, 2), (3, 2)]
    same = judged(4, "one two three ", [False])
    assert candidate_pairs([a, same]) == []  # equal texts make no pair


def test_the_length_rule_drops_pairs_whose_chosen_answer_is_much_shorter():
    assert shortened_too_much(chosen_words=5, rejected_words=10, ratio=0.4) and not shortened_too_much(5, 10, 0.5)
    assert not shortened_too_much(12, 10, 0.0)  # a longer chosen answer is never dropped
    short = judged(0, "a b", [True])
    long = judged(1, "a b c d e f g h i j", [False])
    assert candidate_pairs([short, long], ratio=0.5) == [] and len(candidate_pairs([short, long], ratio=0.8)) == 1


def test_pick_is_seeded_and_balanced_ratio_is_the_official_search():
    options = [(judged(i, str(i), [True]), judged(9, "x", [False])) for i in range(5)]
    assert pick(options, 3) is pick(options, 3) and pick([], 3) is None
    assert len({pick(options, s)[0].index for s in range(50)}) == 5
    assert balanced_ratio([(10, 10), (5, 10)]) == 0.0  # dropping the shortened pair leaves equal means
    # here the shortened pair must stay to balance a longer chosen answer: the first ratio that keeps it
    assert balanced_ratio([(14, 10), (6, 10)]) == pytest.approx(0.4)


# -- with the feedback twin ------------------------------------------------------------------
@pytest.fixture(scope="module")
def backend(feedback_llava):
    from seva_plugin.plugins.backends.hf import HfBackend

    b = HfBackend(model=feedback_llava, template="llava", batch_size=4)
    b.hf_model  # noqa: B018 - load once for the module
    return b


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("rlaifv_images")
    out = []
    for i, name in enumerate(make_images(folder, 4)):
        path = str(folder / name)
        record = PromptRecord(f"q{i}", "<image>Describe the image.", [path])
        out.append(LoadedRecord(record, [Image.open(path).convert("RGB")], record_seed(0, record.id)))
    return out


@pytest.fixture(scope="module")
def made(backend, records):
    return rlaifv(**SMALL).make_pairs(records, backend)


def test_pairs_hold_their_answers_claims_probes_and_scores(made, backend, records):
    assert len(made) >= 2
    by_id = {r.id: r for r in records}
    for pair in made:
        s = pair.scores
        assert s["method"] == "rlaifv" and pair.prompt == pair.record.prompt
        chosen, rejected = s["chosen"], s["rejected"]
        assert chosen["score"] - rejected["score"] >= 1 and chosen["sample"] != rejected["sample"]
        for side, text in ((chosen, pair.chosen), (rejected, pair.rejected)):
            assert side["claims"] == P.sentences(text)
            assert side["questions"] == [P.probe(P.template_question(c)) for c in side["claims"]]
            assert side["accepted"] == [y > n for y, n in zip(side["p_yes"], side["p_no"], strict=True)]
            assert side["score"] == -side["accepted"].count(False)
        assert s["candidates"]["samples"] == 4 and sorted(s["candidates"]["scores"])[-1] >= chosen["score"]
        assert s["candidates"]["pairs"] >= 1
        assert by_id[pair.record.id].record is pair.record


def test_probe_probabilities_are_the_models_next_token_probabilities(made, backend, records):
    """P(word) recomputed with one plain forward pass over the probe's prompt: softmax of the last logits."""
    model, renderer = backend.hf_model, backend.renderer
    pair = made[0]
    record = next(r for r in records if r.record is pair.record)
    side = pair.scores["rejected"]
    question = side["questions"][0]
    prompt = renderer.prompt_ids("<image>\n" + question, record.images)
    mm = renderer.mm_inputs([record.images], [prompt])
    with torch.no_grad():
        probs = model(**backend.batch_inputs([prompt], mm)).logits[0, -1].float().softmax(-1)
    word_ids = [renderer.answer_ids(w)[0] for w in ("yes", "Yes", "no", "No")]
    assert all(len(renderer.answer_ids(w)) == 1 for w in ("yes", "Yes", "no", "No"))  # one token each on this twin
    assert side["p_yes"][0] == pytest.approx(float(probs[word_ids[0]] + probs[word_ids[1]]), rel=1e-4)
    assert side["p_no"][0] == pytest.approx(float(probs[word_ids[2]] + probs[word_ids[3]]), rel=1e-4)


def test_pairs_do_not_depend_on_the_batch(made, backend, records):
    alone = rlaifv(**SMALL).make_pairs(records[1:2], backend) + rlaifv(**SMALL).make_pairs(records[2:], backend)
    together = [p for p in made if p.record.id != records[0].id]
    assert [(p.record.id, p.chosen, p.rejected, p.scores) for p in alone] == [(p.record.id, p.chosen, p.rejected, p.scores) for p in together]


class Recording:
    """The real backend, with every request it is sent kept (a spy, not a mock: the answers are the model's)."""

    def __init__(self, backend):
        self.backend, self.generated, self.scored = backend, [], []

    def generate(self, requests):
        self.generated.append(list(requests))
        return self.backend.generate(requests)

    def score(self, requests):
        self.scored.append(list(requests))
        return self.backend.score(requests)


def test_model_made_claims_and_questions_go_through_the_official_prompts(backend, records):
    strategy = rlaifv(num_samples=3, max_new_tokens=12, feedback_max_new_tokens=12, max_rows=4)
    spy = Recording(backend)
    strategy.make_pairs(records[:2], spy)
    answers, *feedback = spy.generated
    assert [len(a.record.images) for a in answers] == [1, 1] and all(a.n == 3 for a in answers)
    sent = [r for call in feedback for r in call]
    assert all(sum(r.n for r in call) <= 4 for call in feedback)  # max_rows answers per call
    texts = [c.text for a in spy.backend.generate(answers) for c in a]
    divides = [r for r in sent if "extracting facts" in r.prompt]
    assert len(divides) == sum(1 for t in texts if t.strip())
    for r in divides:
        assert r.prompt.startswith("<image>\n" + P.DIVIDE_PROMPT + r.record.record.question + "\nAnswer: ")
        assert (r.sampling.temperature, r.sampling.top_p, r.max_new_tokens, r.view) == (0.2, 0.9, 12, CLEAN)
    asks = [r for r in sent if "general question" in r.prompt]
    assert asks and all(r.prompt.startswith("<image>\n" + P.TO_QUESTION_PROMPT + "\n- ") for r in asks)
    assert len({r.seed for r in sent}) == len(sent)  # every request its own seed
    # every distinct probe scored for each yes and no word, on the clean image
    scored = [r for call in spy.scored for r in call]
    assert all(r.view is CLEAN and r.prompt.endswith(P.PROBE_SUFFIX) for r in scored)
    assert len(scored) % 4 == 0 and [r.text for r in scored[:4]] == ["yes", "Yes", "no", "No"]


def test_a_backend_that_cannot_score_is_refused_before_loading(feedback_llava, tmp_path, monkeypatch):
    from helpers import use_backends
    from seva_plugin.interfaces import Backend
    from seva_plugin.pipeline.build import Build

    class Speaker(Backend):
        name = "speaker"

        def __init__(self, model, template):
            pass

        def generate(self, requests):
            raise AssertionError("never called")

    use_backends(monkeypatch, Speaker)
    make_images(tmp_path / "imgs", 1)
    (tmp_path / "p.jsonl").write_text('{"id": "a", "image": "imgs/img000.png", "question": "What is it?"}\n')
    config = {
        "model": feedback_llava,
        "template": "llava",
        "source": {"file": str(tmp_path / "p.jsonl")},
        "strategy": "rlaifv",
        "backend": {"name": "speaker"},
        "output": {"dataset_dir": str(tmp_path / "d"), "name": "x"},
    }
    with pytest.raises(ConfigError, match="strategy 'rlaifv' scores texts"):
        Build(config)


def test_probabilities_are_finite_and_written_rounded(made):
    for pair in made:
        for side in ("chosen", "rejected"):
            assert all(0 <= p <= 1 and math.isfinite(p) for key in ("p_yes", "p_no") for p in pair.scores[side][key])

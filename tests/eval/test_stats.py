"""The figures by hand, the bootstrap's intervals, McNemar's test against scipy's, POPE's parser."""

from __future__ import annotations

import pytest

from seva_plugin.eval.answers import parse_yes_no
from seva_plugin.eval.stats import bootstrap, confusion, mcnemar, metrics, paired_bootstrap


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Yes, there is a dog in the image.", "yes"),
        ("No, there is no dog.", "no"),
        ("There is not a dog in the image.", "no"),
        ("No.", "no"),
        ("no,", "no"),  # commas are dropped first
        ("Yes. No dog though.", "yes"),  # only the first sentence counts
        ("Not at all", "yes"),  # POPE's words are exactly No, no and not
        ("No\nthere is none", "yes"),  # split on spaces only: "No\nthere" is one word
        ("", "yes"),  # no answer counts as yes
        ("nothing", "yes"),
    ],
)
def test_pope_parser(text, expected):
    assert parse_yes_no(text) == expected


def test_metrics_by_hand():
    labels = [True, True, True, False, False, False, False, True]
    preds = [True, True, False, True, False, False, True, True]
    counts = confusion(labels, preds)
    assert counts == {"tp": 3, "fp": 2, "tn": 2, "fn": 1}
    m = metrics(**counts)
    assert m == {"n": 8, "accuracy": 5 / 8, "precision": 3 / 5, "recall": 3 / 4, "f1": 2 * 0.6 * 0.75 / 1.35, "yes_ratio": 5 / 8}
    assert metrics(tp=0, fp=0, tn=4, fn=4) == {"n": 8, "accuracy": 0.5, "precision": 0.0, "recall": 0.0, "f1": 0.0, "yes_ratio": 0.0}


def test_bootstrap_intervals_hold_the_estimate_and_are_seeded():
    labels = [i % 2 == 0 for i in range(400)]
    preds = [(i % 2 == 0) != (i % 7 == 0) for i in range(400)]
    point = metrics(**confusion(labels, preds))
    ci = bootstrap("random", labels, preds, 500, seed=0)
    assert ci == bootstrap("random", labels, preds, 500, seed=0)
    assert ci != bootstrap("random", labels, preds, 500, seed=1) and ci != bootstrap("popular", labels, preds, 500, seed=0)
    for m, (lo, hi) in ci.items():
        assert lo <= point[m] <= hi and hi - lo < 0.2, m
    assert bootstrap("random", labels, preds, 0, seed=0) == {}
    # the change between two runs: zero when they agree, and it brackets the real change
    same = paired_bootstrap("random", labels, preds, preds, 200, seed=0)
    assert all(v == [0.0, 0.0] for v in same.values())
    better = paired_bootstrap("random", labels, preds, labels, 200, seed=0)
    assert better["accuracy"][0] > 0 and better["accuracy"][0] <= 1 - point["accuracy"] <= better["accuracy"][1]


def test_mcnemar_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    assert mcnemar(0, 0)["p"] == 1.0
    assert mcnemar(10, 0) == {"p": 2 / 1024, "test": "exact binomial"}
    for b, c in ((3, 9), (12, 12), (0, 24)):
        assert mcnemar(b, c)["p"] == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue)
    for b, c in ((30, 10), (100, 120), (13, 12)):
        got = mcnemar(b, c)
        assert got["test"] == "chi-square, continuity-corrected"
        assert got["p"] == pytest.approx(stats.chi2.sf((abs(b - c) - 1) ** 2 / (b + c), 1))

"""Two runs on the same probes, by hand: the paired counts, McNemar, the yes-ratio shift, the words."""

from __future__ import annotations

import pytest

from seva_plugin.errors import ConfigError
from seva_plugin.eval.compare import compare_runs, compare_table


def rows(predictions: str, labels: str, setting: str = "adversarial") -> list[dict]:
    return [{"setting": setting, "question_id": i, "label": {"y": "yes", "n": "no"}[lab], "prediction": {"y": "yes", "n": "no"}[p], "question": f"q{i}"}
            for i, (p, lab) in enumerate(zip(predictions, labels, strict=True))]  # fmt: skip


LABELS = "yyyyynnnnn" * 3


def test_paired_counts_and_the_verdicts():
    before = rows("yyyyyyyyyy" * 3, LABELS)  # says yes to everything
    after = rows("yyyyynnnnn" * 3, LABELS)  # right everywhere: 15 fixed (the absent objects), none broken
    comp = compare_runs(("base", "dpo"), (before, after), 200, seed=0)
    s = comp["settings"]["adversarial"]
    assert (s["n"], s["fixed"], s["broken"], s["yes_to_no"], s["no_to_yes"]) == (30, 15, 0, 15, 0)
    assert s["a"]["accuracy"] == 0.5 and s["b"]["accuracy"] == 1.0 and s["change"]["yes_ratio"] == -0.5
    assert s["mcnemar"] == {"p": 2 / 2**15, "test": "exact binomial"}
    text = compare_table(comp)
    assert "accuracy 50.0% -> 100.0% (+50.0 points): 15 answers fixed, 0 broken; McNemar p = 6.1e-05 (exact binomial): unlikely to be chance." in text
    assert "yes-ratio 100.0% -> 50.0% (0 no->yes, 15 yes->no, p = 6.1e-05)." in text

    swapped = compare_runs(("base", "dpo"), (before, rows("yyyyyyyyyn" + "yyyyyyyyyy" * 2, LABELS)), 200, seed=0)
    s = swapped["settings"]["adversarial"]
    assert (s["fixed"], s["broken"], s["mcnemar"]["p"]) == (1, 0, 1.0)
    assert "not distinguishable from chance (McNemar p = 1, exact binomial)" in compare_table(swapped)


def test_only_shared_probes_are_paired_and_different_probes_refused():
    before = rows("yyyyyyyyyy", LABELS[:10])
    comp = compare_runs(("a", "b"), (before, before[:6]), 0, seed=0)
    assert comp["settings"]["adversarial"]["n"] == 6 and comp["unpaired"] == {"a": 4, "b": 0}
    assert "Left out of the comparison (answered by one run only): 4 of a, 0 of b." in compare_table(comp)
    other = [{**r, "question": "another"} for r in before]
    same = compare_table(compare_runs(("a", "b"), (before, before), 0, seed=0))
    assert "adversarial: no answer changed its prediction (accuracy 50.0%, yes-ratio 100.0%)." in same
    with pytest.raises(ConfigError, match="asked different probes"):
        compare_runs(("a", "b"), (before, other), 0, seed=0)
    with pytest.raises(ConfigError, match="share no probe"):
        compare_runs(("a", "b"), (before, rows("y", "y", setting="random")), 0, seed=0)

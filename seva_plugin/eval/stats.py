"""POPE's figures and how sure they are: accuracy, precision, recall, F1 and yes-ratio (as POPE's
``evaluate.py`` computes them, yes being the positive class), seeded percentile-bootstrap 95%
intervals, and McNemar's test for two runs on the same probes.

A ratio whose denominator is zero (precision with no yes answer) is 0, where POPE's script would
divide by zero.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Any

METRICS = ("accuracy", "precision", "recall", "f1", "yes_ratio")
EXACT_BELOW = 25  # discordant pairs under this: McNemar's exact binomial form, else chi-square with continuity correction
CHUNK = 2_000_000  # resampled probes held at once


def confusion(labels: Sequence[bool], preds: Sequence[bool]) -> dict[str, int]:
    """``tp``, ``fp``, ``tn``, ``fn`` with yes as positive (``True`` is yes)."""
    out = {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
    for label, pred in zip(labels, preds, strict=True):
        out[("t" if label == pred else "f") + ("p" if pred else "n")] += 1
    return out


def metrics(tp: int, fp: int, tn: int, fn: int) -> dict[str, Any]:
    n = tp + fp + tn + fn

    def ratio(a: int, b: int) -> float:
        return a / b if b else 0.0

    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    return {
        "n": n,
        "accuracy": ratio(tp + tn, n),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "yes_ratio": ratio(tp + fp, n),
    }


def _metric_arrays(labels: Any, preds: Any) -> dict[str, Any]:
    """Each metric for every row of resampled ``labels``/``preds`` (boolean arrays, one resample a row)."""
    import numpy as np

    n = labels.shape[1]
    tp = (labels & preds).sum(1)
    fp = (~labels & preds).sum(1)
    fn = (labels & ~preds).sum(1)
    tn = n - tp - fp - fn

    def ratio(a: Any, b: Any) -> Any:
        return np.divide(a, b, out=np.zeros(len(a)), where=b > 0)

    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    return {
        "accuracy": (tp + tn) / n,
        "precision": precision,
        "recall": recall,
        "f1": ratio(2 * precision * recall, precision + recall),
        "yes_ratio": (tp + fp) / n,
    }


def _resampled(key: str, n: int, resamples: int, seed: int) -> Any:
    """Index rows of the bootstrap, chunk by chunk; ``key`` (a setting) gives each its own stream."""
    import numpy as np

    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    per = max(1, CHUNK // max(1, n))
    for start in range(0, resamples, per):
        yield rng.integers(0, n, size=(min(per, resamples - start), n))


def _interval(values: Any) -> list[float]:
    import numpy as np

    lo, hi = np.percentile(values, [2.5, 97.5])
    return [float(lo), float(hi)]


def bootstrap(key: str, labels: Sequence[bool], preds: Sequence[bool], resamples: int, seed: int) -> dict[str, list[float]]:
    """95% percentile intervals of each metric over ``resamples`` resamples of the probes."""
    import numpy as np

    if resamples == 0 or not labels:
        return {}
    y, p = np.asarray(labels, dtype=bool), np.asarray(preds, dtype=bool)
    parts = [_metric_arrays(y[idx], p[idx]) for idx in _resampled(key, len(y), resamples, seed)]
    return {m: _interval(np.concatenate([part[m] for part in parts])) for m in METRICS}


def paired_bootstrap(key: str, labels: Sequence[bool], a: Sequence[bool], b: Sequence[bool], resamples: int, seed: int) -> dict[str, list[float]]:
    """95% intervals of each metric's change from run ``a`` to run ``b``, the same probes resampled for both."""
    import numpy as np

    if resamples == 0 or not labels:
        return {}
    y, pa, pb = (np.asarray(x, dtype=bool) for x in (labels, a, b))
    changes: dict[str, list[Any]] = {m: [] for m in METRICS}
    for idx in _resampled(key, len(y), resamples, seed):
        ma, mb = _metric_arrays(y[idx], pa[idx]), _metric_arrays(y[idx], pb[idx])
        for m in METRICS:
            changes[m].append(mb[m] - ma[m])
    return {m: _interval(np.concatenate(v)) for m, v in changes.items()}


def mcnemar(b: int, c: int) -> dict[str, Any]:
    """Two-sided McNemar test on ``b`` and ``c``, the discordant pairs (one run right and the other
    wrong, each way): the exact binomial form (``b ~ Binomial(b + c, 1/2)``) for fewer than
    ``EXACT_BELOW`` of them, else chi-square with Edwards' continuity correction."""
    n = b + c
    if n == 0:
        return {"p": 1.0, "test": "none (no discordant pairs)"}
    if n < EXACT_BELOW:
        tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
        return {"p": min(1.0, 2 * tail / 2**n), "test": "exact binomial"}
    chi2 = (abs(b - c) - 1) ** 2 / n
    return {"p": math.erfc(math.sqrt(chi2 / 2)), "test": "chi-square, continuity-corrected"}

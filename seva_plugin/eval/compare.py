"""Before and after: two runs' predictions on the same probes, side by side, with the paired change,
its 95% interval (the same probes resampled for both runs) and McNemar's test, in plain words."""

from __future__ import annotations

from typing import Any

from seva_plugin.errors import ConfigError
from seva_plugin.eval.report import NAMES, pct
from seva_plugin.eval.stats import METRICS, confusion, mcnemar, metrics, paired_bootstrap

ALPHA = 0.05


def compare_runs(names: tuple[str, str], runs: tuple[list[dict], list[dict]], resamples: int, seed: int) -> dict[str, Any]:
    """Per setting, the probes both runs answered (paired by setting and question id)."""
    a_rows, b_rows = runs
    b_by_key = {(r["setting"], r["question_id"]): r for r in b_rows}
    paired: dict[str, list[tuple[dict, dict]]] = {}
    for r in a_rows:
        other = b_by_key.get((r["setting"], r["question_id"]))
        if other is None:
            continue
        if other["label"] != r["label"] or other.get("question") != r.get("question"):
            raise ConfigError(f"{names[0]} and {names[1]} asked different probes as {r['setting']} question {r['question_id']}: not the same probe set.")
        paired.setdefault(r["setting"], []).append((r, other))
    if not paired:
        raise ConfigError(f"{names[0]} and {names[1]} share no probe (setting and question_id): nothing to compare.")
    settings = {s: _setting(s, pairs, resamples, seed) for s, pairs in paired.items()}
    both = sum(map(len, paired.values()))
    return {"runs": list(names), "unpaired": {"a": len(a_rows) - both, "b": len(b_rows) - both}, "settings": settings}


def _setting(name: str, pairs: list[tuple[dict, dict]], resamples: int, seed: int) -> dict[str, Any]:
    labels = [a["label"] == "yes" for a, _ in pairs]
    pa = [a["prediction"] == "yes" for a, _ in pairs]
    pb = [b["prediction"] == "yes" for _, b in pairs]
    ma, mb = metrics(**confusion(labels, pa)), metrics(**confusion(labels, pb))
    right_a = [p == y for p, y in zip(pa, labels, strict=True)]
    right_b = [p == y for p, y in zip(pb, labels, strict=True)]
    fixed = sum(not x and y for x, y in zip(right_a, right_b, strict=True))
    broken = sum(x and not y for x, y in zip(right_a, right_b, strict=True))
    to_no = sum(x and not y for x, y in zip(pa, pb, strict=True))
    to_yes = sum(not x and y for x, y in zip(pa, pb, strict=True))
    return {
        "n": len(pairs),
        "a": ma,
        "b": mb,
        "change": {m: mb[m] - ma[m] for m in METRICS},
        "change_ci95": paired_bootstrap(name, labels, pa, pb, resamples, seed),
        "fixed": fixed,  # wrong before, right after
        "broken": broken,  # right before, wrong after
        "mcnemar": mcnemar(fixed, broken),
        "yes_to_no": to_no,
        "no_to_yes": to_yes,
        "yes_shift": mcnemar(to_yes, to_no),
    }


def _signed(x: float) -> str:
    return f"{100 * x:+.1f}"


def verdict(name: str, s: dict[str, Any]) -> str:
    """The accuracy change and the yes-ratio shift of one setting, in words."""
    if not (s["fixed"] or s["broken"] or s["yes_to_no"] or s["no_to_yes"]):
        return f"{name}: no answer changed its prediction (accuracy {pct(s['a']['accuracy'])}%, yes-ratio {pct(s['a']['yes_ratio'])}%)."
    test = s["mcnemar"]
    change = f"accuracy {pct(s['a']['accuracy'])}% -> {pct(s['b']['accuracy'])}% ({_signed(s['change']['accuracy'])} points)"
    change += f": {s['fixed']} {'answer' if s['fixed'] == 1 else 'answers'} fixed, {s['broken']} broken"
    if test["p"] < ALPHA:
        said = f"{name}: {change}; McNemar p = {test['p']:.2g} ({test['test']}): unlikely to be chance."
    else:
        said = f"{name}: {change}; not distinguishable from chance (McNemar p = {test['p']:.2g}, {test['test']})."
    shift = s["yes_shift"]
    moved = f"yes-ratio {pct(s['a']['yes_ratio'])}% -> {pct(s['b']['yes_ratio'])}% ({s['no_to_yes']} no->yes, {s['yes_to_no']} yes->no"
    moved += f", p = {shift['p']:.2g})" + ("." if shift["p"] < ALPHA else ": no clear shift.")
    return f"{said} {moved}"


def compare_table(comp: dict[str, Any]) -> str:
    a, b = comp["runs"]
    lines = ["| setting | run | n | " + " | ".join(NAMES[m] for m in METRICS) + " |", "|---|---|---:|" + "---:|" * len(METRICS)]
    for name, s in comp["settings"].items():
        for label, key in ((a, "a"), (b, "b")):
            lines.append(f"| {name} | {label} | {s['n']} | " + " | ".join(pct(s[key][m]) for m in METRICS) + " |")
        ci = s["change_ci95"]
        changes = [_signed(s["change"][m]) + (f" [{_signed(ci[m][0])}, {_signed(ci[m][1])}]" if m in ci else "") for m in METRICS]
        lines.append(f"| {name} | change | | " + " | ".join(changes) + " |")
    lines += ["", f"Figures in percent; change = {b} - {a} in points [95% paired bootstrap interval]."]
    lines += [verdict(name, s) for name, s in comp["settings"].items()]
    unpaired = comp["unpaired"]
    if unpaired["a"] or unpaired["b"]:
        lines.append(f"Left out of the comparison (answered by one run only): {unpaired['a']} of {a}, {unpaired['b']} of {b}.")
    return "\n".join(lines)

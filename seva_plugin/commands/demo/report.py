"""The demo's figures, computed from answers and ground truth, and their printed form.

Everything here is plain arithmetic on lists and dicts, so tests can check it by hand.
"""

from __future__ import annotations

import math
from collections import Counter

from seva_plugin.commands.demo.pope import report_lines as pope_report_lines
from seva_plugin.commands.demo.world import answer_words, is_correct


def accuracy_by_kind(examples, answers: list[str]) -> dict[str, float]:
    """Fraction of correct answers per question kind, plus ``all``."""
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for ex, ans in zip(examples, answers, strict=True):
        for key in (ex.kind, "all"):
            total[key] += 1
            right[key] += is_correct(ans, ex.answer)
    return {k: right[k] / total[k] for k in total}


def changes(examples, before: list[str], after: list[str]) -> dict[str, int]:
    """How many answers a training step fixed (wrong -> right) and broke (right -> wrong)."""
    out = Counter(fixed=0, broken=0)
    for ex, b, a in zip(examples, before, after, strict=True):
        was, now = is_correct(b, ex.answer), is_correct(a, ex.answer)
        out["fixed"] += now and not was
        out["broken"] += was and not now
    return dict(out)


def sign_test(fixed: int, broken: int) -> float:
    """Two-sided sign test: how likely a split at least this uneven is if DPO changed answers at random."""
    n, k = fixed + broken, min(fixed, broken)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def first_word(answer: str) -> str:
    words = answer_words(answer)
    return words[0] if words else "(other)"


def error_profile(items) -> dict[str, Counter]:
    """Per question kind, how often each wrong answer was given; ``items`` are (example, answer)."""
    out: dict[str, Counter] = {}
    for ex, ans in items:
        if not is_correct(ans, ex.answer):
            out.setdefault(ex.kind, Counter())[first_word(ans)] += 1
    return out


def overlap(a: Counter, b: Counter) -> float:
    """Overlap of two answer distributions: 1 when the same answers come in the same shares, 0 when disjoint."""
    na, nb = sum(a.values()), sum(b.values())
    if not na or not nb:
        return 0.0
    return sum(min(a[k] / na, b[k] / nb) for k in set(a) | set(b))


def error_resemblance(heldout, clean_answers: list[str], entries, truth: dict) -> dict:
    """The model's own errors on clean held-out images next to the wrong rejected answers of the kept
    pairs (what DPO teaches against), per kind, with the overlap of the two distributions."""
    clean = error_profile(zip(heldout, clean_answers, strict=True))
    noised = error_profile((truth[e["id"]], e["rejected"]) for e in entries if e.get("kind") == "pair")
    return {
        kind: {
            "clean": dict(clean.get(kind, {})),
            "rejected": dict(noised.get(kind, {})),
            "overlap": overlap(clean.get(kind, Counter()), noised.get(kind, Counter())),
        }
        for kind in sorted(set(clean) | set(noised))
    }


def pair_precision(entries, truth: dict) -> dict:
    """How often chosen and rejected are right, over the pairs kept and over the identical drops.

    ``entries`` are build-journal lines (``kind`` pair or drop, with ``id``, ``chosen``,
    ``rejected``); ``truth`` maps a prompt id to its world Example.
    """
    kept: Counter[str] = Counter()
    identical: Counter[str] = Counter()
    for e in entries:
        if e.get("kind") not in ("pair", "drop") or "chosen" not in e:
            continue
        answer = truth[e["id"]].answer
        c, r = is_correct(e["chosen"], answer), is_correct(e["rejected"], answer)
        bucket = kept if e["kind"] == "pair" else identical if e.get("reason") == "identical" else None
        if bucket is None:
            continue
        bucket["n"] += 1
        bucket["chosen_correct"] += c
        bucket["rejected_correct"] += r
        bucket["useful"] += c and not r  # the pair teaches the truth
        bucket["inverted"] += r and not c  # the pair teaches against the truth
        bucket["both_wrong"] += not c and not r
    return {"kept": _rates(kept), "identical": _rates(identical)}


def _rates(counts: Counter) -> dict:
    n = counts["n"]
    return {"n": n, **{k: (counts[k] / n if n else 0.0) for k in ("chosen_correct", "rejected_correct", "useful", "inverted", "both_wrong")}}


# -- printing -----------------------------------------------------------------------------
def _pct(x: float) -> str:
    return f"{100 * x:5.1f}%"


def _counts(d: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"


def _top(d: dict, n: int = 3) -> str:
    total = sum(d.values())
    if not total:
        return "-"
    return ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))[:n]) + f" (n={total})"


NAMES = {"seva": "SeVa", "stic": "STIC", "rlaifv": "RLAIF-V"}
MADE_BY = {
    "seva": "chosen: clean image; rejected: noised, t={step}",
    "stic": "chosen: the step-by-step description; rejected: a hallucination prompt or a corrupted image",
    "rlaifv": "chosen: the sampled answer with fewer claims its own yes/no probes reject; rejected: one with more",
}


def format_report(r: dict) -> str:
    kinds = [k for k in r["dpo"]["before"] if k != "all"] + ["all"]
    lines = [
        "{} demo: tiny LLaVA on the shapes world (seed {}, CPU)".format(NAMES[r.get("strategy", "seva")], r["seed"]),
        "",
        "World: {sft} SFT questions, {unlabeled} unlabeled prompts, {heldout} held-out questions (kinds: {kinds}).".format(
            **r["sizes"], kinds=", ".join(k for k in kinds if k != "all")
        ),
        "",
        "1. Accuracy of the SFT model on held-out images, clean versus diffusion-noised (step t):",
        "   " + "t".rjust(6) + "".join(k.rjust(10) for k in kinds),
    ]
    for step, acc in zip(r["noise"]["steps"], r["noise"]["accuracy"], strict=True):
        label = f"{step}" + ("*" if step == 0 else "")
        lines.append("   " + label.rjust(6) + "".join(_pct(acc[k]).rjust(10) for k in kinds))
    lines.append("   (* t=0 is the clean image; SeVa's rejected answers below used t={}.)".format(r["pairs"]["step"]))

    p, kept = r["pairs"], r["pairs"]["precision"]["kept"]
    ident = p["precision"]["identical"]
    lines += [
        "",
        f"2. {NAMES[r.get('strategy', 'seva')]} pairs on the {p['prompts']} unlabeled prompts ({MADE_BY[r.get('strategy', 'seva')].format(step=p['step'])}):",
        f"   kept {p['kept']}; dropped: {_counts(p['dropped'])}; rejected inputs: {_counts(p['rejected'])}",
        f"   of the kept pairs: chosen correct {_pct(kept['chosen_correct'])}, rejected correct {_pct(kept['rejected_correct'])}",
        f"   useful (chosen right, rejected wrong) {_pct(kept['useful'])}, inverted (chosen wrong, rejected right) "
        f"{_pct(kept['inverted'])}, both wrong {_pct(kept['both_wrong'])}",
        f"   of the {ident['n']} identical (dropped) pairs: both correct {_pct(ident['chosen_correct'])}",
        "",
        "   What DPO is taught to avoid, next to the mistakes the model really makes (wrong answers by kind):",
        "   " + "kind".ljust(10) + "errors on clean held-out images".ljust(46) + "wrong rejected answers in the pairs".ljust(46) + "overlap",
        *("   " + kind.ljust(10) + _top(e["clean"]).ljust(46) + _top(e["rejected"]).ljust(46) + f"{e['overlap']:.2f}" for kind, e in r["resemblance"].items()),
    ]

    d = r["dpo"]
    n = r["sizes"]["heldout"]
    delta = d["after"]["all"] - d["before"]["all"]
    lines += [
        "",
        f"3. DPO on the kept pairs (LoRA, {r['recipes']['dpo']}): held-out accuracy before -> after",
        *(f"   {k:>9}  {_pct(d['before'][k])} -> {_pct(d['after'][k])}" for k in kinds),
        f"   change {100 * delta:+.1f} points on {n} questions (one question is {100 / n:.2f} points): DPO fixed {d['fixed']} answers and broke {d['broken']}",
        f"   (sign test p = {sign_test(d['fixed'], d['broken']):.2f}: the chance of a split at least this uneven if DPO moved answers at random).",
        "   on noised held-out images (t={}), the view SeVa rejects: {} -> {}".format(
            p["step"], _pct(d["before_noised"]["all"]).strip(), _pct(d["after_noised"]["all"]).strip()
        ),
        *(pope_report_lines(r["pope"]) if "pope" in r else []),
        "",
        f"SFT model:    {r['paths']['sft']}",
        f"DPO adapter:  {r['paths']['adapter'] or '(none: no pairs kept)'}",
        f"pairs:        {r['paths']['pairs']}   (look at them: seva inspect {r['paths']['data_dir']} --name {r['paths']['name']} --html gallery.html)",
        f"report:       {r['paths']['report']}",
    ]
    return "\n".join(lines)

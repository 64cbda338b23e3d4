"""The recipe's keys and values against LLaMA-Factory's argument classes, and the training method (do_train, pref_loss)."""

from __future__ import annotations

import os
import re

from seva_plugin.commands.check_recipe.facts import allowed_values, arg_fields, dpo_loss_facts, scalar_kind, setting
from seva_plugin.commands.check_recipe.report import CheckReport
from seva_plugin.errors import did_you_mean, show


def check_keys(recipe: dict, report: CheckReport) -> None:
    fields = arg_fields()
    extra_allowed = os.getenv("ALLOW_EXTRA_ARGS", "0").lower() in ("true", "y", "1")  # as LLaMA-Factory reads it
    for key, value in recipe.items():
        if key not in fields:
            if extra_allowed:
                report.warn(f"unknown key '{key}' is ignored (ALLOW_EXTRA_ARGS is set).{did_you_mean(key, fields)}")
            else:
                report.error(
                    f"unknown key '{key}': llamafactory-cli train refuses keys its argument classes do not define "
                    f"(unless ALLOW_EXTRA_ARGS=1).{did_you_mean(key, fields)}"
                )
            continue
        cls, f, tp = fields[key]
        help_text = str(f.metadata.get("help", ""))
        if re.search(r"deprecated and will be removed|is deprecated.*\buse\b", help_text, re.I | re.S):
            report.warn(f"'{key}' is deprecated in the installed packages: {help_text}")
        if value is None:
            continue
        choices = allowed_values(tp)
        if choices is not None:
            allowed = [str(c) for c in choices]
            if str(value) not in allowed:
                report.error(f"{key}: '{value}' is not allowed; {cls.__name__} accepts {', '.join(allowed)}.{did_you_mean(str(value), allowed)}")
            continue
        kind = scalar_kind(tp)
        if kind is bool and not isinstance(value, bool):
            report.error(f"{key}: expected true or false, got {show(value)}.")
        elif kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            report.error(f"{key}: expected an integer, got {show(value)}.")
        elif kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
            report.error(f"{key}: expected a number, got {show(value)} (write 1.0e-4 or 1e-4, not a quoted string).")


def check_lf_validation(recipe: dict, report: CheckReport) -> None:
    """Run LLaMA-Factory's own __post_init__ checks of the non-training argument classes."""
    from llamafactory.hparams import DataArguments, FinetuningArguments, GeneratingArguments, ModelArguments

    fields = arg_fields()
    for cls in (ModelArguments, DataArguments, FinetuningArguments, GeneratingArguments):
        kwargs = {k: v for k, v in recipe.items() if k in fields and fields[k][0] is cls}
        try:
            cls(**kwargs)
        except (ValueError, AssertionError, TypeError) as exc:
            report.error(f"LLaMA-Factory rejects the recipe ({cls.__name__}): {exc}")


def check_method(recipe: dict, report: CheckReport) -> None:
    stage = setting(recipe, "stage")
    if not recipe.get("do_train", False):
        report.warn("do_train is not true: llamafactory-cli train would set everything up and not train. Add `do_train: true`.")
    if stage != "dpo":
        return
    pref_loss = setting(recipe, "pref_loss")
    facts = dpo_loss_facts()
    if pref_loss in facts["own"] or facts["passes_loss_type"] is None:
        return
    if not facts["passes_loss_type"] and facts.get("trl_param"):
        default = facts["trl_default"]
        if pref_loss != default:
            report.error(
                f"pref_loss: {pref_loss} is accepted by LLaMA-Factory but not really implemented with the installed trl "
                f"{facts['trl']}: LLaMA-Factory calls trl's DPOTrainer.dpo_loss without a loss_type ({facts['call']}) "
                f"and trl {facts['trl']} then computes its default '{default}', so training would silently run {default} DPO. "
                f"Use pref_loss: {default} (what SeVa uses), or one LLaMA-Factory computes itself: {', '.join(sorted(facts['own']))}."
            )
        return
    supported = facts["trl_supported"]
    if supported and pref_loss not in supported:
        report.error(f"pref_loss: {pref_loss} is not implemented by the installed trl {facts['trl']} (its dpo_loss knows {', '.join(sorted(supported))}).")

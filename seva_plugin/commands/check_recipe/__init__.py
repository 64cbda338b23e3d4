"""``seva check-recipe RECIPE.yaml [key=value ...]``: validate a LLaMA-Factory training recipe in seconds.

Nothing is loaded but the recipe, ``dataset_info.json``, the first record of each local data file and,
when the model is a local directory (or in the Hugging Face cache), its ``config.json`` and
``preprocessor_config.json``. The rules come from the installed packages wherever they can:

- allowed keys: the ``init`` fields of LLaMA-Factory's ``ModelArguments``, ``DataArguments``,
  ``TrainingArguments``, ``FinetuningArguments`` and ``GeneratingArguments`` (what
  ``HfArgumentParser.parse_dict`` accepts); ``Literal`` and enum fields give the allowed values;
- LLaMA-Factory's own ``__post_init__`` checks of the model, data, finetuning and generating arguments;
- ``pref_loss``: whether LLaMA-Factory's DPO trainer passes the loss type to trl's ``dpo_loss``, read
  from the installed sources (with trl 0.24 it does not: hinge, ipo and kto_pair silently compute sigmoid);
- ``mix_strategy``: LLaMA-Factory's mapping to a ``stopping_strategy``, checked against what the
  installed ``datasets.interleave_datasets`` accepts (``interleave_once`` fails with datasets 4.0.0);
- templates, their multimodal plugin, and LLaMA-Factory's default template for known hub ids.

Problems are errors (training would stop or silently do something else), warnings (risks), or
hints (the recipe asks for hardware or packages this machine lacks; fine on the training machine).

Modules: ``report`` (CheckReport, loading the recipe), ``facts`` (what the installed packages define),
``arguments`` (keys, values, training method), ``datasets`` (registration, files, mixing, provenance),
``build_configs`` (data_templates/ and manifests), ``model`` (model and template), ``image_tokens``
(cutoff_len, image_max_pixels), ``machine`` (GPU features, packages, output_dir), ``environment``
(installed versions: FlashAttention-2 on transformers 5.6.0, Conv3d models on torch 2.9; ``seva doctor``),
``files`` (safe file reads).
"""

from __future__ import annotations

import argparse
import os
import sys

from seva_plugin.commands.check_recipe.arguments import check_keys, check_lf_validation, check_method
from seva_plugin.commands.check_recipe.build_configs import find_build_config
from seva_plugin.commands.check_recipe.datasets import check_datasets, check_mixing
from seva_plugin.commands.check_recipe.environment import check_recipe_environment
from seva_plugin.commands.check_recipe.image_tokens import check_cutoff, check_generation_pixels
from seva_plugin.commands.check_recipe.machine import check_hardware, check_output
from seva_plugin.commands.check_recipe.model import check_template
from seva_plugin.commands.check_recipe.report import CheckReport, load_recipe

__all__ = ["CheckReport", "check_recipe", "find_build_config", "load_recipe", "main"]


def _run(report: CheckReport, label: str, fn, *args):
    try:
        return fn(*args)
    except Exception as exc:  # a check that cannot run must not hide the others
        report.warn(f"the {label} check could not run: {type(exc).__name__}: {exc}")
        return None


def check_recipe(path: str, overrides: list[str] | None = None, planned: dict[str, dict] | None = None) -> CheckReport:
    """Validate a LLaMA-Factory training recipe without loading weights. ``planned``: datasets a
    build will write before training, with their entries (``check_datasets``)."""
    report = CheckReport()
    recipe = load_recipe(path, overrides, report)
    if recipe is None:
        return report
    _run(report, "key", check_keys, recipe, report)
    _run(report, "method", check_method, recipe, report)
    datasets = _run(report, "dataset", check_datasets, recipe, path, report, "dataset", planned) or []
    if recipe.get("eval_dataset"):
        _run(report, "eval dataset", check_datasets, recipe, path, report, "eval_dataset")
    _run(report, "mixing", check_mixing, recipe, datasets, report)
    template_check = _run(report, "template", check_template, recipe, report)
    plugin, facts = template_check if template_check else (None, None)
    _run(report, "cutoff_len", check_cutoff, recipe, path, plugin, facts, datasets, report)
    _run(report, "image_max_pixels", check_generation_pixels, recipe, path, facts, datasets, report)
    _run(report, "hardware", check_hardware, recipe, report)
    _run(report, "environment", check_recipe_environment, recipe, report)
    _run(report, "output", check_output, recipe, report)
    if not report.errors:  # LLaMA-Factory's own argument checks catch what the rules above do not know
        _run(report, "LLaMA-Factory argument", check_lf_validation, recipe, report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="seva check-recipe",
        description="Validate a LLaMA-Factory training recipe (keys, datasets, loss, mixing, template, cutoff_len, hardware) without loading weights.",
    )
    parser.add_argument("recipe", metavar="RECIPE", help="a llamafactory-cli train YAML, e.g. recipes/seva_llava.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="overrides, as llamafactory-cli takes them (dataset_dir=/data)")
    args = parser.parse_args(argv)
    import logging

    logging.disable(logging.WARNING)  # LLaMA-Factory's argument classes log while they validate
    try:
        report = check_recipe(args.recipe, args.overrides)
    finally:
        logging.disable(logging.NOTSET)
    status = "FAILED" if report.errors else "ok"
    summary = f"{args.recipe}: {status} ({len(report.errors)} errors, {len(report.warnings)} warnings, {len(report.hints)} hints)"
    try:
        for line in [*report.lines(), summary]:
            print(line)
        sys.stdout.flush()
    except BrokenPipeError:  # `seva check-recipe x.yaml | head`
        sys.stdout = open(os.devnull, "w")  # keep the interpreter from failing again at exit
    return 1 if report.errors else 0

"""``seva eval EVAL.yaml [key=value ...]``: POPE-style probes through a backend, a report, and with
``compare`` two runs side by side (docs/eval.md)."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from typing import Any

from seva_plugin.eval.config import RUNS, EvalConfig, load_eval_config


def evaluate(config: str | dict[str, Any] | EvalConfig, overrides: list[str] | None = None, progress: bool = True, say=print) -> dict[str, Any]:
    """Run (or resume) the eval; ``say`` gets the Markdown tables. Returns the report, or with
    ``compare`` ``{"runs": {name: report or folder}, "compare": ...}`` (also in ``compare.json``)."""
    from seva_plugin.eval.runner import Evaluation

    cfg = config if isinstance(config, EvalConfig) else load_eval_config(config, overrides)
    if cfg.compare is None:
        result = Evaluation(cfg).run(progress)
        say(result.table)
        _timing(result)
        return result.report

    from seva_plugin.eval.compare import compare_runs, compare_table
    from seva_plugin.eval.report import read_predictions
    from seva_plugin.pipeline.files import atomic_write_json

    out = os.path.abspath(cfg.output["dir"])
    evaluations = {  # everything checked before either model loads
        item: Evaluation(replace(cfg, adapter=cfg.adapter if item == "adapter" else None, compare=None, output={**cfg.output, "dir": os.path.join(out, item)}))
        for item in cfg.compare
        if item in RUNS
    }
    folders: dict[str, str] = {}
    for item in cfg.compare:
        if item in evaluations:
            result = evaluations[item].run(progress)
            say(f"{item} ({result.out_dir}):\n\n{result.table}\n")
            _timing(result)
            folders[item] = result.out_dir
        else:
            folders[item] = os.path.abspath(item)
    a, b = cfg.compare
    comp = compare_runs((a, b), (read_predictions(folders[a]), read_predictions(folders[b])), cfg.bootstrap, cfg.seed)
    comp["folders"] = folders
    os.makedirs(out, exist_ok=True)
    atomic_write_json(os.path.join(out, "compare.json"), comp)
    say(compare_table(comp))
    return comp


def _timing(result: Any) -> None:
    rate = f", {result.probes_per_second:.1f} probes/s" if result.probes_per_second else ""
    print(f"seva eval: {result.out_dir} in {result.seconds:.1f} s{rate}", file=sys.stderr)

"""``seva iterate --eval EVAL.yaml``: the probes asked of round 0's model and of each round's trained
model, a table and a plot of F1 and yes-ratio by round in the work dir.

Each evaluation is a ``seva eval`` run in ``<work>/eval/m<k>`` (``m0``: the model round 0 starts
from; ``m<k>``: the model round ``k`` trained) with the EVAL.yaml's probes, backend and scoring, and
the iteration's model and template. The iteration's state records each finished evaluation with the
fingerprint of its config, so a resumed iterate does not ask a finished one again.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import Any

from seva_plugin.errors import ConfigError
from seva_plugin.eval.config import EvalConfig, load_eval_config, read_eval_yaml
from seva_plugin.eval.report import pct
from seva_plugin.pipeline.files import atomic_write_bytes, atomic_write_lines

TABLE, PLOT = "eval_rounds.md", "eval_rounds.png"


class RoundEvals:
    def __init__(self, path: str, work_dir: str, template: str, log: Callable[[str], None] = print):
        self.data = read_eval_yaml(path)
        for key in ("compare", "adapter"):
            if self.data.get(key):
                raise ConfigError(f"{path}: `{key}` cannot be used with seva iterate --eval, which evaluates each round's merged model.")
        self.path, self.work_dir, self.template, self.log = os.path.abspath(path), work_dir, template, log
        self.config(0, "model")  # its keys checked before round 0

    def config(self, index: int, model: str) -> EvalConfig:
        """The EVAL.yaml with this evaluation's model, the iteration's template and its own output folder."""
        output = {"dir": os.path.join(self.work_dir, "eval", f"m{index}"), "overwrite": True}  # a changed EVAL.yaml starts it over
        return load_eval_config({**self.data, "model": model, "template": self.template, "output": output})

    def evaluate(self, index: int, model: str, state: dict[str, Any], progress: bool = True) -> bool:
        """Evaluate ``model`` as number ``index`` unless the state has it; True when it ran."""
        from seva_plugin.eval.runner import Evaluation

        config = self.config(index, model)
        evals: list[dict[str, Any]] = state.setdefault("evals", [])
        known = next((e for e in evals if e["index"] == index), None)
        if known and known["fingerprint"] == config.fingerprint() and os.path.isfile(known["report"]):
            return False
        self.log(f"[seva iterate] eval {label(index)}: POPE-style probes ({config.probes['format']}) on {model}")
        result = Evaluation(config).run(progress)
        entry = {
            "index": index,
            "model": model,
            "report": os.path.join(result.out_dir, "report.json"),
            "fingerprint": config.fingerprint(),
            "settings": {s: {k: f[k] for k in ("n", "accuracy", "f1", "yes_ratio")} for s, f in result.report["settings"].items()},
        }
        state["evals"] = sorted([e for e in evals if e["index"] != index] + [entry], key=lambda e: e["index"])
        self.log(f"[seva iterate] POPE-style probes by round ({TABLE} and {PLOT} in {self.work_dir}):\n{self.summarize(state)}")
        return True

    def summarize(self, state: dict[str, Any]) -> str:
        """Write the table and the plot of every evaluation so far; return the table."""
        evals = state.get("evals", [])
        text = rounds_table(evals)
        atomic_write_lines(os.path.join(self.work_dir, TABLE), [text + "\n"])
        if evals:
            plot_rounds(evals, os.path.join(self.work_dir, PLOT))
        return text


def label(index: int) -> str:
    return "base (round 0's model)" if index == 0 else f"after round {index}"


def rounds_table(evals: list[dict[str, Any]]) -> str:
    lines = ["| model | setting | n | accuracy | F1 | yes-ratio |", "|---|---|---:|---:|---:|---:|"]
    for e in evals:
        for name, f in e["settings"].items():
            lines.append(f"| {label(e['index'])} | {name} | {f['n']} | {pct(f['accuracy'])} | {pct(f['f1'])} | {pct(f['yes_ratio'])} |")
    return "\n".join(lines)


def plot_rounds(evals: list[dict[str, Any]], path: str) -> None:
    """F1 and yes-ratio by round, one line per setting (matplotlib's Agg canvas: no display, no global backend)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6), layout="constrained")
    x = [e["index"] for e in evals]
    settings = list(dict.fromkeys(s for e in evals for s in e["settings"]))
    for ax, metric, title in zip(fig.subplots(1, 2), ("f1", "yes_ratio"), ("F1 (%)", "yes-ratio (%)"), strict=True):
        for s in settings:
            ax.plot(x, [100 * e["settings"][s][metric] if s in e["settings"] else float("nan") for e in evals], marker="o", label=s)
        if metric == "yes_ratio":
            ax.axhline(50, color="grey", linestyle=":", linewidth=1)  # POPE's probes are half yes, half no
        ax.set_title(title)
        ax.set_xlabel("round (0: the model before training)")
        ax.set_xticks(x)
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize="small")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, [buffer.getvalue()])
